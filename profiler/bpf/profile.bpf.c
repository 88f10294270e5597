// SPDX-License-Identifier: GPL-2.0
/* bpfprof sampler: on every perf_event sample, count (tgid, tid, stacks, comm) in the kernel. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "profile.h"

#define EFAULT 14
#define EEXIST 17
#define PF_KTHREAD 0x00200000

/* Set before load through .rodata (see profiler/bpf/loader.py); the only .rodata variable. */
const volatile struct profile_config cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 40960); /* resized before load: --counts-size */
	__type(key, struct stack_key);
	__type(value, struct stack_value);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384); /* resized before load: --stack-storage-size */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);  /* tgid */
	__type(value, __u8);
} targets SEC(".maps");

/* sampled processes: their exec generation and what user space was told (so it captures their
 * maps while they live, and again after each exec) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct proc_state);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} new_procs SEC(".maps");

/* --call-graph dwarf: one record's worth of scratch per CPU (the BPF stack is 512 bytes), indexed by
 * CPU; resized before load (1 entry when unused) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dwarf_sample);
} scratch SEC(".maps");

/* --call-graph dwarf: samples to unwind in user space; resized before load (one page when unused) */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1; /* per-CPU slot; perf_event programs do not nest on one CPU */
}

/* Tell user space about a process the first time it is sampled, and again on its first sample
 * after an exec, so its memory map is captured while it lives and after it changes. Returns the
 * exec generation for the sample's key. */
static __always_inline __u32 track(__u32 tgid)
{
	struct proc_state *st = bpf_map_lookup_elem(&seen, &tgid);
	struct proc_state fresh = {};
	__u32 gen = st ? st->exec_gen : 0;

	if (st && st->announced == gen + 1)
		return gen;
	/* announced == 0: a new process (or a new one that reuses a PID, see on_fork) */
	__u32 kind = st && st->announced ? NOTICE_EXEC : NOTICE_FIRST;
	struct proc_notice notice = {.tgid = tgid, .kind = kind, .exec_gen = gen};
	if (bpf_ringbuf_output(&new_procs, &notice, sizeof(notice), 0) != 0) {
		stat_inc(STAT_NEW_PROC_DROPPED); /* not marked: tried again on a later sample */
		if (!st)
			bpf_map_update_elem(&seen, &tgid, &fresh, BPF_NOEXIST);
		return gen;
	}
	if (st) {
		st->announced = gen + 1;
	} else {
		fresh.announced = 1;
		bpf_map_update_elem(&seen, &tgid, &fresh, BPF_NOEXIST);
	}
	return gen;
}

/* Whether a sample of this task is profiled: the idle task only with -I, only target processes
 * when there are targets. Counts what it drops and what it admits. */
static __always_inline int admit(__u32 tgid, __u32 tid)
{
	if (tid == 0 && !cfg.include_idle) {
		stat_inc(STAT_IDLE_SKIPPED);
		return 0;
	}
	if (cfg.filter_tgids && !bpf_map_lookup_elem(&targets, &tgid))
		return 0;
	stat_inc(STAT_SEEN);
	return 1;
}

/* Whether the sample interrupted the kernel: kernel addresses have the top bit set (x86_64, arm64). */
static __always_inline int in_kernel(struct bpf_perf_event_data *ctx)
{
	return (PT_REGS_IP(&ctx->regs) >> 63) != 0;
}

/* A user or kernel stack into `stacks`, its id or -errno; the two errors are counted apart:
 * -EEXIST a bucket collision (a lost stack), -EFAULT no stack where one was expected. */
static __always_inline __s32 stack_id(struct bpf_perf_event_data *ctx, int user)
{
	__s32 id = bpf_get_stackid(ctx, &stacks, user ? BPF_F_USER_STACK : 0);

	if (id == -EEXIST)
		stat_inc(user ? STAT_USER_COLLISION : STAT_KERNEL_COLLISION);
	else if (id == -EFAULT)
		stat_inc(user ? STAT_USER_MISSING : STAT_KERNEL_MISSING);
	else if (id < 0)
		stat_inc(user ? STAT_USER_OTHER_ERROR : STAT_KERNEL_OTHER_ERROR);
	return id;
}

SEC("perf_event")
int do_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 tid = (__u32)id;

	if (!admit(tgid, tid))
		return 0;

	struct task_struct *task = bpf_get_current_task_btf();
	int kthread = tid == 0 || (task->flags & PF_KTHREAD);

	struct stack_key key = {};
	key.tgid = tgid;
	key.tid = tid;
	key.exec_gen = tgid ? track(tgid) : 0;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));

	key.user_stack_id = cfg.user_stacks && !kthread ? stack_id(ctx, 1) : STACK_SKIPPED;
	/* a user-mode sample has no kernel stack: normal, not a loss */
	key.kernel_stack_id = cfg.kernel_stacks && (in_kernel(ctx) || kthread) ? stack_id(ctx, 0) : STACK_SKIPPED;

	struct stack_value *val = bpf_map_lookup_elem(&counts, &key);
	if (!val) {
		struct stack_value zero = {};
		/* -EEXIST: another CPU inserted it first; look it up again */
		if (bpf_map_update_elem(&counts, &key, &zero, BPF_NOEXIST) != 0 &&
		    !bpf_map_lookup_elem(&counts, &key)) {
			stat_inc(STAT_COUNTS_FULL);
			return 0;
		}
		val = bpf_map_lookup_elem(&counts, &key);
		if (!val) {
			stat_inc(STAT_COUNTS_FULL);
			return 0;
		}
	}
	__sync_fetch_and_add(&val->samples, 1);
	__sync_fetch_and_add(&val->period, ctx->sample_period);
	stat_inc(STAT_KEPT);
	return 0;
}

/* --call-graph dwarf: registers and the user stack, copied page by page from sp (one large read fails
 * when the top of the stack is near sp), sent to user space to unwind with the binaries' CFI. */
SEC("perf_event")
int do_sample_dwarf(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 tid = (__u32)id;

	if (!admit(tgid, tid))
		return 0;

	struct task_struct *task = bpf_get_current_task_btf();
	if (tid == 0 || (task->flags & PF_KTHREAD)) {
		stat_inc(STAT_KTHREAD_SKIPPED); /* no user stack to unwind */
		return 0;
	}
	__u32 cpu = bpf_get_smp_processor_id();
	struct dwarf_sample *s = bpf_map_lookup_elem(&scratch, &cpu);
	if (!s)
		return 0;
	s->tgid = tgid;
	s->tid = tid;
	s->exec_gen = track(tgid);
	s->period = ctx->sample_period;
	s->flags = 0;
	bpf_get_current_comm(&s->comm, sizeof(s->comm));

	struct pt_regs *uregs = (struct pt_regs *)bpf_task_pt_regs(task);
	s->ip = uregs->ip;
	s->sp = uregs->sp;
	s->bp = uregs->bp;

	s->kernel_stack_id = cfg.kernel_stacks && in_kernel(ctx) ? stack_id(ctx, 0) : STACK_SKIPPED;

	__u32 limit = cfg.dwarf_stack_size;
	if (limit > DWARF_STACK_MAX)
		limit = DWARF_STACK_MAX;
	__u32 copied = 0;
	for (int i = 0; i <= DWARF_STACK_MAX / PAGE_SIZE_BYTES; i++) {
		if (copied >= limit || copied > DWARF_STACK_MAX - PAGE_SIZE_BYTES)
			break;
		__u64 addr = s->sp + copied;
		__u64 n = PAGE_SIZE_BYTES - (addr & (PAGE_SIZE_BYTES - 1)); /* to the end of this page */
		if (n > limit - copied)
			n = limit - copied;
		/* bounds the verifier can see (the compiler would otherwise fold them away) */
		__u64 off = copied;
		barrier_var(off);
		off &= DWARF_STACK_MAX - 1;
		barrier_var(n);
		if (n == 0 || n > PAGE_SIZE_BYTES)
			break;
		if (bpf_probe_read_user(&s->stack[off], n, (void *)addr) != 0)
			break; /* the end of the stack mapping */
		copied += n;
	}
	if (copied >= limit)
		s->flags |= DWARF_FLAG_STACK_CUT;
	s->stack_len = copied;

	__u64 size = __builtin_offsetof(struct dwarf_sample, stack) + (copied & (DWARF_STACK_MAX - 1));
	if (copied == DWARF_STACK_MAX)
		size = __builtin_offsetof(struct dwarf_sample, stack) + DWARF_STACK_MAX;
	/* No wakeup per sample (thousands a second): user space drains the ring every poll interval,
	 * and is woken early only when the ring is a quarter full. */
	__u64 wake = bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA) > cfg.samples_wakeup_bytes
			 ? BPF_RB_FORCE_WAKEUP
			 : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&samples, s, size, wake) != 0) {
		stat_inc(STAT_SAMPLES_DROPPED);
		return 0;
	}
	stat_inc(STAT_KEPT);
	return 0;
}

/* A new process: a PID reused by it still has the `seen` state of the process that had it before,
 * whose maps user space captured; the new process gets the next generation, so its samples have keys
 * of their own and its first one announces it again (issue #7: a reused PID named from the old maps).
 * With targets: a child of a target becomes a target (-- COMMAND, -p). */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid;
	__u32 ctgid = child->tgid;
	if (ptgid == ctgid) /* a new thread */
		return 0;
	struct proc_state *st = bpf_map_lookup_elem(&seen, &ctgid);
	if (st) { /* no sample can race: the old process is gone, the child has not run yet */
		st->exec_gen += 1;
		st->announced = 0;
	}
	if (!cfg.follow_forks || !bpf_map_lookup_elem(&targets, &ptgid))
		return 0;
	__u8 one = 1;
	bpf_map_update_elem(&targets, &ctgid, &one, BPF_ANY);
	return 0;
}

/* The last thread of a process exits (its mm is gone already: do_exit() runs exit_mm() before this
 * tracepoint): a sampled one is announced, so user space can symbolize and forget it while recording;
 * a target leaves `targets`. signal->live reaches 0 at the last thread (kernel/exit.c do_exit); two
 * threads exiting at once may both see 0: user space takes a notice twice as once. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	if (p->signal->live.counter != 0)
		return 0;
	__u32 tgid = p->tgid;
	if (cfg.filter_tgids)
		bpf_map_delete_elem(&targets, &tgid);
	struct proc_state *st = bpf_map_lookup_elem(&seen, &tgid);
	if (!st || !st->announced) /* never sampled, or its notice was lost: nothing to forget */
		return 0;
	struct proc_notice notice = {.tgid = tgid, .kind = NOTICE_EXIT, .exec_gen = st->exec_gen};
	if (bpf_ringbuf_output(&new_procs, &notice, sizeof(notice), 0) != 0)
		stat_inc(STAT_EXIT_DROPPED);
	return 0;
}

/* A sampled process that execs runs a new image: its later samples carry the next generation, and
 * the first of them announces it again. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = p->tgid;
	struct proc_state *st = bpf_map_lookup_elem(&seen, &tgid);

	if (st)
		__sync_fetch_and_add(&st->exec_gen, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
