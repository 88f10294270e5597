/* Shared by stat.bpf.c and profiler/bpf/stat_abi.py: the one source of truth for `bpfprof stat`'s
 * keys, values, health counters and read-only config. Python mirrors these layouts with ctypes;
 * tests/unit/test_stat_abi.py compiles this header and compares sizes, offsets and constants. */
#ifndef BPFPROF_STAT_H
#define BPFPROF_STAT_H

#define STAT_COMM_LEN 16
#define STAT_MAX_EVENTS 16 /* counting events per session */

/* The catch-all task: charged when `tasks` is full, so the totals over tasks still add up. */
#define STAT_TGID_OTHER 0xffffffffU

/* Who a share of the counts belongs to (`tasks` key). With by_tid, tid and the thread's comm;
 * else tid 0 and the comm of the thread-group leader (the process name). */
struct stat_key {
	__u32 tgid;
	__u32 tid;
	char comm[STAT_COMM_LEN];
};

/* Per task: the sums of the counter deltas charged to it, and of the counters' enabled and
 * running time deltas (ns) over the same stretches, for multiplexing scale-up. */
struct stat_value {
	__u64 counter[STAT_MAX_EVENTS];
	__u64 enabled[STAT_MAX_EVENTS];
	__u64 running[STAT_MAX_EVENTS];
};

/* Per CPU: the last readings of this CPU's counters, and the task that was switched out last. */
struct stat_cpu_state {
	struct stat_value last;
	struct stat_key pending; /* owner of switch-out events counted since the last switch */
	__u32 has_pending;
	__u32 pad;
};

struct stat_config {
	__u32 nr_events;       /* counters per CPU, <= STAT_MAX_EVENTS */
	__u32 nr_cpus;         /* stride of `counters`: event i of CPU c sits at i * nr_cpus + c */
	__u32 switch_out_mask; /* bit i: event i counts at switch-out, after sched_switch fires */
	/* bit i: read event i's count alone (bpf_perf_event_read: no clock reads) and charge no
	 * times with it; set for software events, which never multiplex, but one whose times stand
	 * for theirs (user space fills them in), or for all when that one is a clock (a clock's
	 * times are its count) */
	__u32 value_only_mask;
	/* bit i: event i is of perf's software PMU (page-faults, ...; not a clock), value-only: load
	 * its count directly, without a helper call */
	__u32 direct_mask;
	/* bit i: event i is context-switches with no exclusions, a switch-out event that counts one
	 * at every switch while it is on: charged to prev at the switch, never read */
	__u32 per_switch_mask;
	__u8 by_tid;           /* key by thread, not by process */
	__u8 filter_tgids;     /* charge only tgids in `targets` */
	__u8 follow_forks;     /* add children of targets to `targets` */
	__u8 pad;
};

enum stat_health_index {
	HEALTH_SWITCHES = 0,  /* sched_switch runs */
	HEALTH_FLUSHES,       /* flush runs (test runs from user space) */
	HEALTH_READ_FAILED,   /* bpf_perf_event_read_value errors: a share not counted */
	HEALTH_TASKS_FULL,    /* shares charged to the catch-all key: `tasks` was full */
	HEALTH_TARGETS_FULL,  /* children of targets not followed: `targets` was full */
	HEALTH_MAX
};

#endif
