// SPDX-License-Identifier: GPL-2.0
/* bpfprof stat: exact per-task counts from per-CPU counting perf events.
 *
 * On every context switch, read each of this CPU's counters, subtract the CPU's last reading and
 * charge the delta (and the enabled/running time deltas) to the task that ran: `prev`. Switch-out
 * events (context-switches, cgroup-switches) are counted by perf_event_task_sched_out(), after the
 * sched_switch tracepoint fires, so their delta belongs to the task switched out one switch before.
 * `stat_flush`, run by user space on each CPU through BPF_PROG_TEST_RUN, charges the share of the
 * task running now (at the end, after the counters are disabled), so the sum over all tasks equals
 * the per-CPU totals exactly.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "stat.h"

#define EEXIST 17

/* Set before load through .rodata (see profiler/stat.py); the only .rodata variable. */
const volatile struct stat_config cfg = {};

/* The key charged when `tasks` is full; user space inserts it before attaching. In .data, as a
 * constant-initialised local would add to .rodata. */
struct stat_key catch_all = {.tgid = STAT_TGID_OTHER};

/* event i of CPU c at i * cfg.nr_cpus + c; resized before load */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* resized before load */
	__type(key, struct stat_key);
	__type(value, struct stat_value);
} tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stat_cpu_state);
} cpu_state SEC(".maps");

/* all zeroes: the initial value of a new `tasks` entry (too large for the 512-byte BPF stack) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stat_value);
} zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HEALTH_MAX);
	__type(key, __u32);
	__type(value, __u64);
} health SEC(".maps");

static __always_inline void health_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&health, &idx);
	if (v)
		*v += 1; /* per-CPU slot; these programs do not nest on one CPU */
}

/* Direct loads through the BTF-typed task pointer: no helper calls on the hot path. */
static __always_inline void copy_comm(char *dst, struct task_struct *t)
{
	*(__u64 *)&dst[0] = *(__u64 *)&t->comm[0];
	*(__u64 *)&dst[8] = *(__u64 *)&t->comm[8];
}

static __always_inline void fill_key(struct stat_key *key, struct task_struct *t)
{
	key->tgid = t->tgid;
	if (cfg.by_tid) {
		key->tid = t->pid;
		copy_comm(key->comm, t);
	} else {
		key->tid = 0;
		copy_comm(key->comm, t->group_leader);
	}
}

/* The `tasks` slot of this key, created on first use; the catch-all when the map is full; NULL when
 * the task is not a target. */
static __always_inline struct stat_value *slot_of(struct stat_key *key)
{
	if (cfg.filter_tgids && !bpf_map_lookup_elem(&targets, &key->tgid))
		return NULL;
	struct stat_value *v = bpf_map_lookup_elem(&tasks, key);
	if (v)
		return v;
	__u32 idx = 0;
	struct stat_value *z = bpf_map_lookup_elem(&zero, &idx);
	if (!z)
		return NULL;
	bpf_map_update_elem(&tasks, key, z, BPF_NOEXIST); /* -EEXIST: another CPU made it first */
	v = bpf_map_lookup_elem(&tasks, key);
	if (v)
		return v;
	health_inc(HEALTH_TASKS_FULL);
	return bpf_map_lookup_elem(&tasks, &catch_all);
}

static __always_inline void add(__u64 *field, __u64 delta)
{
	if (delta) /* most deltas of most events are 0: skip the locked add */
		__sync_fetch_and_add(field, delta);
}

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* The perf_event at `index` of `counters`, or NULL, loaded directly: the chain counters (a bpf_array)
 * -> ptrs[index] (a bpf_event_entry) -> event goes through read-only casts: plain loads, a fault
 * reads 0. */
static __always_inline struct perf_event *event_at(__u64 index)
{
	struct bpf_array *arr = bpf_rdonly_cast(&counters, bpf_core_type_id_kernel(struct bpf_array));
	char *slot = (char *)arr + bpf_core_field_offset(struct bpf_array, ptrs) + index * sizeof(void *);
	struct llist_node *ptr = bpf_rdonly_cast(slot, bpf_core_type_id_kernel(struct llist_node));
	struct bpf_event_entry *ee =
		bpf_rdonly_cast(ptr->next, bpf_core_type_id_kernel(struct bpf_event_entry));
	return ee ? ee->event : NULL;
}

/* The count of a counting event of perf's software PMU (page-faults, context-switches, ...) at
 * `index` of `counters`, loaded directly: perf_event_read_local() only loads event->count for these,
 * and a helper call costs more than the rest of the program. */
static __always_inline int load_count(__u64 index, __u64 *count)
{
	struct perf_event *ev = event_at(index);
	if (!ev)
		return -1; /* no counter placed there */
	*count = ev->count.a.a.counter;
	return 0;
}

/* Event i of this CPU, with its enabled and running times (a clock read in the kernel), or, with
 * value_only, its count alone. */
static __always_inline int read_counter(__u32 i, __u32 cpu, struct bpf_perf_event_value *now, int value_only)
{
	__u64 index = (__u64)i * cfg.nr_cpus + cpu;
	if (bpf_rdonly_cast && (cfg.direct_mask & (1U << i)))
		return load_count(index, &now->counter);
	if (!value_only)
		return bpf_perf_event_read_value(&counters, index, now, sizeof(*now)) ? -1 : 0;
	long v = bpf_perf_event_read(&counters, index);
	if (v < 0 && v >= -4095) /* -errno; counts never get that large */
		return -1;
	now->counter = v;
	return 0;
}

/* Read this CPU's counters and charge what they counted since the last reading: to `t`, or for
 * switch-out events to the task switched out before (but context-switches with no exclusions: one to
 * `t` at each switch, unread). At a switch, `t` becomes the pending owner.
 * Helper calls and locked adds are what this costs (the kernel's return thunks make every call
 * dear), so value-only events are charged their counts alone: their times are those of a time
 * source event, which user space fills in (stat.py, TaskCounter.read_tasks). */
static __always_inline void account(struct task_struct *t, int at_switch)
{
	__u32 idx = 0;
	struct stat_cpu_state *st = bpf_map_lookup_elem(&cpu_state, &idx);
	if (!st)
		return;
	struct stat_key key = {};
	fill_key(&key, t);
	struct stat_value *owner = slot_of(&key);
	__u32 per_switch = bpf_rdonly_cast ? cfg.per_switch_mask : 0;
	struct stat_value *before = NULL;
	if (cfg.switch_out_mask & ~per_switch) /* a second lookup: the task switched out before */
		before = st->has_pending ? slot_of(&st->pending) : owner;
	__u32 cpu = bpf_get_smp_processor_id();
	if (cpu >= cfg.nr_cpus)
		return;

	for (__u32 i = 0; i < STAT_MAX_EVENTS; i++) {
		if (i >= cfg.nr_events)
			break;
		if (per_switch & (1U << i)) {
			/* perf_event_task_sched_out() counts this switch right after the tracepoint, with
			 * interrupts still off (so the counter cannot be switched on or off in between), and
			 * counts no other: the same one, charged now. The flush has none to charge. */
			if (at_switch && owner) {
				struct perf_event *ev = event_at((__u64)i * cfg.nr_cpus + cpu);
				if (ev && ev->state == PERF_EVENT_STATE_ACTIVE)
					add(&owner->counter[i], 1);
			}
			continue;
		}
		struct bpf_perf_event_value now = {};
		int value_only = cfg.value_only_mask & (1U << i);
		if (read_counter(i, cpu, &now, value_only)) {
			health_inc(HEALTH_READ_FAILED);
			continue;
		}
		__u64 dc = now.counter - st->last.counter[i];
		st->last.counter[i] = now.counter;
		struct stat_value *to = (cfg.switch_out_mask & (1U << i)) ? before : owner;
		if (to)
			add(&to->counter[i], dc);
		if (value_only)
			continue;
		__u64 de = now.enabled - st->last.enabled[i];
		__u64 dr = now.running - st->last.running[i];
		st->last.enabled[i] = now.enabled;
		st->last.running[i] = now.running;
		if (to) {
			add(&to->enabled[i], de);
			add(&to->running[i], dr);
		}
	}
	if (at_switch) {
		st->pending = key;
		st->has_pending = 1;
	}
}

SEC("tp_btf/sched_switch")
int BPF_PROG(stat_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	health_inc(HEALTH_SWITCHES);
	account(prev, 1);
	return 0;
}

/* Run by user space on one CPU (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU: an IPI there, so the
 * current task is the one that was running on it): charge its share counted so far. */
SEC("raw_tp")
int stat_flush(void *ctx)
{
	health_inc(HEALTH_FLUSHES);
	account(bpf_get_current_task_btf(), 0);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(stat_fork, struct task_struct *parent, struct task_struct *child)
{
	if (!cfg.follow_forks)
		return 0;
	__u32 ptgid = parent->tgid;
	if (!bpf_map_lookup_elem(&targets, &ptgid))
		return 0;
	__u32 ctgid = child->tgid;
	__u8 one = 1;
	if (bpf_map_update_elem(&targets, &ctgid, &one, BPF_ANY))
		health_inc(HEALTH_TARGETS_FULL);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
