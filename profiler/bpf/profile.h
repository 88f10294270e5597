/* Shared by profile.bpf.c and profiler/bpf/abi.py: the one source of truth for keys, values,
 * stats indices and the read-only config. Python mirrors these layouts with ctypes; a unit test
 * compiles this header and compares sizes and offsets. */
#ifndef BPFPROF_PROFILE_H
#define BPFPROF_PROFILE_H

#define TASK_COMM_LEN 16
#define MAX_STACK_DEPTH 127 /* PERF_MAX_STACK_DEPTH, the kernel's default perf_event_max_stack */

struct stack_key {
	__u32 tgid;
	__u32 tid;
	__s32 user_stack_id;   /* < 0: -errno from bpf_get_stackid, or STACK_SKIPPED */
	__s32 kernel_stack_id; /* < 0: -errno from bpf_get_stackid, or STACK_SKIPPED */
	__u32 exec_gen;        /* execs of the process seen while recording: which image it ran */
	char comm[TASK_COMM_LEN];
};

struct stack_value {
	__u64 samples; /* number of samples with this key */
	__u64 period;  /* sum of their sample periods (ns for cpu-clock, events for PMCs) */
};

/* --call-graph dwarf: user stack bytes copied per sample, at most (perf allows 65528) */
#define DWARF_STACK_MAX (64 * 1024)
#define PAGE_SIZE_BYTES 4096

/* A record of the `samples` ring buffer (--call-graph dwarf): registers and a copy of the user stack,
 * unwound in user space. Only the first `stack_len` bytes of `stack` are sent. */
struct dwarf_sample {
	__u32 tgid;
	__u32 tid;
	__u32 exec_gen;
	__s32 kernel_stack_id; /* as in stack_key */
	__u64 period;
	__u64 ip;  /* user registers, also when the sample interrupted the kernel */
	__u64 sp;
	__u64 bp;
	__u32 stack_len; /* bytes copied from sp upwards */
	__u32 flags;     /* DWARF_FLAG_* */
	char comm[TASK_COMM_LEN];
	/* a page of slack past DWARF_STACK_MAX: lets the verifier prove a masked offset plus one page read
	 * stays inside; never sent */
	__u8 stack[DWARF_STACK_MAX + PAGE_SIZE_BYTES];
};

#define DWARF_FLAG_STACK_CUT 1 /* the copy stopped at the size limit, not at the end of the stack */

/* A stack id that was not asked for (-U / -K), so it is neither missing nor lost. */
#define STACK_SKIPPED (-1000)

enum stat_index {
	STAT_SEEN = 0,            /* samples of target tasks */
	STAT_KEPT,                /* samples added to counts */
	STAT_COUNTS_FULL,         /* samples lost: counts map full */
	STAT_USER_COLLISION,      /* user stack lost to a stack-map bucket collision (-EEXIST) */
	STAT_KERNEL_COLLISION,    /* kernel stack lost to a collision (-EEXIST) */
	STAT_USER_MISSING,        /* no user stack where one was expected (-EFAULT on a user task) */
	STAT_KERNEL_MISSING,      /* no kernel stack where one was expected (sample in kernel mode) */
	STAT_USER_OTHER_ERROR,    /* any other bpf_get_stackid error (user) */
	STAT_KERNEL_OTHER_ERROR,  /* any other bpf_get_stackid error (kernel) */
	STAT_IDLE_SKIPPED,        /* samples of the idle task, dropped (no -I) */
	STAT_NEW_PROC_DROPPED,    /* new-process notices lost: ring buffer full */
	STAT_SAMPLES_DROPPED,     /* --call-graph dwarf samples lost: ring buffer full (consumer behind) */
	STAT_KTHREAD_SKIPPED,     /* --call-graph dwarf: kernel-thread samples, not sent */
	STAT_EXIT_DROPPED,        /* exit notices lost: ring buffer full (that process is kept to the end) */
	STAT_MAX
};

/* A record of the `new_procs` ring buffer: a process sampled for the first time, or again after exec;
 * or a sampled process that exited. */
struct proc_notice {
	__u32 tgid;
	__u32 kind;     /* NOTICE_FIRST, NOTICE_EXEC or NOTICE_EXIT */
	__u32 exec_gen; /* the image now running (as in stack_key); NOTICE_EXIT: the last one it ran */
};

#define NOTICE_FIRST 0 /* first sample of a process (also a new process that reuses a PID) */
#define NOTICE_EXEC 1  /* first sample after an exec */
#define NOTICE_EXIT 2  /* the last thread of a sampled process exited: its images take no more samples */

/* value of the `seen` map: a sampled process, its image generation, and what user space was told */
struct proc_state {
	/* images of this PID while recording: +1 on each exec, and +1 when a new process reuses the PID,
	 * so (tgid, exec_gen) names one image of one process for the whole run */
	__u32 exec_gen;
	__u32 announced; /* 1 + the exec_gen last announced; 0: nothing announced for this process yet */
};

struct profile_config {
	__u8 filter_tgids;   /* only tgids in the `targets` map */
	__u8 include_idle;   /* keep samples of pid 0 */
	__u8 user_stacks;    /* collect user stacks */
	__u8 kernel_stacks;  /* collect kernel stacks */
	__u8 follow_forks;   /* add children of targets to `targets` */
	__u8 pad[3];
	__u32 dwarf_stack_size; /* --call-graph dwarf: bytes of user stack to copy (<= DWARF_STACK_MAX) */
	__u32 samples_wakeup_bytes; /* --call-graph dwarf: wake user space once this much is queued */
};

#endif
