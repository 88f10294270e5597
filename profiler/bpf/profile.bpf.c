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
	struct proc_notice notice = {.tgid = tgid, .kind = gen ? NOTICE_EXEC : NOTICE_FIRST, .exec_gen = gen};
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

SEC("perf_event")
int do_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 tid = (__u32)id;

	if (tid == 0 && !cfg.include_idle) {
		stat_inc(STAT_IDLE_SKIPPED);
		return 0;
	}
	if (cfg.filter_tgids && !bpf_map_lookup_elem(&targets, &tgid))
		return 0;
	stat_inc(STAT_SEEN);

	struct task_struct *task = bpf_get_current_task_btf();
	int kthread = tid == 0 || (task->flags & PF_KTHREAD);
	/* kernel addresses have the top bit set on x86_64 and arm64 */
	int in_kernel = (PT_REGS_IP(&ctx->regs) >> 63) != 0;

	struct stack_key key = {};
	key.tgid = tgid;
	key.tid = tid;
	key.exec_gen = tgid ? track(tgid) : 0;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));

	if (cfg.user_stacks && !kthread) {
		key.user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
		if (key.user_stack_id == -EEXIST)
			stat_inc(STAT_USER_COLLISION);
		else if (key.user_stack_id == -EFAULT)
			stat_inc(STAT_USER_MISSING);
		else if (key.user_stack_id < 0)
			stat_inc(STAT_USER_OTHER_ERROR);
	} else {
		key.user_stack_id = STACK_SKIPPED;
	}
	if (cfg.kernel_stacks && (in_kernel || kthread)) {
		key.kernel_stack_id = bpf_get_stackid(ctx, &stacks, 0);
		if (key.kernel_stack_id == -EEXIST)
			stat_inc(STAT_KERNEL_COLLISION);
		else if (key.kernel_stack_id == -EFAULT)
			stat_inc(STAT_KERNEL_MISSING);
		else if (key.kernel_stack_id < 0)
			stat_inc(STAT_KERNEL_OTHER_ERROR);
	} else {
		/* a user-mode sample has no kernel stack: normal, not a loss */
		key.kernel_stack_id = STACK_SKIPPED;
	}

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

/* Follow children: a new process whose parent is a target becomes a target (-- COMMAND, -p). */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (!cfg.follow_forks)
		return 0;
	__u32 ptgid = parent->tgid;
	__u32 ctgid = child->tgid;
	if (ptgid == ctgid || !bpf_map_lookup_elem(&targets, &ptgid))
		return 0;
	__u8 one = 1;
	bpf_map_update_elem(&targets, &ctgid, &one, BPF_ANY);
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
