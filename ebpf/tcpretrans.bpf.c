// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * tcpretrans: TCP retransmissions counted in the kernel, plus rate-capped flow records.
 *
 * The count is in segments, matching the kernel's TcpRetransSegs (TCP_MIB_RETRANSSEGS):
 * tcp:tcp_retransmit_skb adds tcp_skb_pcount(skb) (a TSO skb of 30 MSS counts 30), and
 * tcp:tcp_retransmit_synack adds one per SYN-ACK retransmit (which TcpRetransSegs also counts).
 *
 * Since the tracepoint has an `err` field, it also fires for attempts that failed. The kernel
 * bumps TcpRetransSegs after its early checks and before handing the skb to the IP layer, so:
 * the early aborts (-EBUSY original still queued, -EAGAIN window shrunk, -EINVAL, -ENOMEM,
 * -EHOSTUNREACH no route) are not in TcpRetransSegs and go to `aborted`; an error from the
 * transmit itself (e.g. NET_XMIT_DROP = 1 when a veth peer's backlog is full, -ENOBUFS, -EPERM
 * from netfilter) comes after the count and is counted in `segments` like a success.
 */
#include "fovea.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Flow records per second (all CPUs); 0 disables records. */
const volatile __u32 record_rate_per_sec = 1000;

#define RETRANS_KIND_SKB 0
#define RETRANS_KIND_SYNACK 1
#define TCP_SYN_RECV 3
#define FOVEA_EBUSY 16
#define FOVEA_EAGAIN 11
#define FOVEA_EINVAL 22
#define FOVEA_ENOMEM 12
#define FOVEA_EHOSTUNREACH 113

/* Mirrored by `RawRetransCount` in src/ebpf/tcpretrans.rs. */
struct retrans_count {
	__u64 segments;    /* retransmitted segments, as TcpRetransSegs counts them */
	__u64 events;      /* tracepoint hits behind `segments` */
	__u64 aborted;     /* segments of attempts aborted before TcpRetransSegs counts them */
	__u64 synack;      /* SYN-ACK retransmits (included in `segments`) */
};

/* Mirrored by `RawRetransRecord` in src/ebpf/tcpretrans.rs (56 bytes). */
struct retrans_record {
	__u64 boot_ns;
	struct fovea_tuple tuple;
	__u8 state;
	__u8 kind;
	__u16 segments;
	__s32 err;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct retrans_count);
} counts SEC(".maps");

FOVEA_STATS_MAP();
FOVEA_RECORD_MAPS(256 * 1024);

/*
 * Tracepoint context memory can only be read at constant offsets with plain loads; the
 * address arrays are copied with bpf_probe_read_kernel instead. A macro, because the two
 * tracepoints have different context structs with the same field names.
 */
#define EMIT_RECORD(ctx, state_, kind_, segments_, err_)                                      \
	do {                                                                               \
		struct retrans_record *rec;                                                \
		__u16 family = (ctx)->family;                                              \
                                                                                           \
		rec = fovea_record_reserve(&records, &rate, &stats, record_rate_per_sec,   \
					   sizeof(*rec));                                  \
		if (!rec)                                                                  \
			break;                                                             \
		__builtin_memset(rec, 0, sizeof(*rec));                                    \
		rec->boot_ns = bpf_ktime_get_boot_ns();                                    \
		if (family == FOVEA_AF_INET6) {                                            \
			bpf_probe_read_kernel(rec->tuple.saddr, 16, (ctx)->saddr_v6);      \
			bpf_probe_read_kernel(rec->tuple.daddr, 16, (ctx)->daddr_v6);      \
		} else {                                                                   \
			bpf_probe_read_kernel(rec->tuple.saddr, 4, (ctx)->saddr);          \
			bpf_probe_read_kernel(rec->tuple.daddr, 4, (ctx)->daddr);          \
		}                                                                          \
		rec->tuple.family = family;                                                \
		rec->tuple.protocol = FOVEA_IPPROTO_TCP;                                   \
		rec->tuple.sport = (ctx)->sport;                                           \
		rec->tuple.dport = (ctx)->dport;                                           \
		rec->state = (state_);                                                     \
		rec->kind = (kind_);                                                       \
		rec->segments = (segments_);                                               \
		rec->err = (err_);                                                         \
		fovea_record_submit(rec, &stats);                                          \
	} while (0)

/* Mirrored by `RetransRecord::counted` in src/ebpf/tcpretrans.rs. */
static __always_inline int aborted_before_count(__s32 err)
{
	return err == -FOVEA_EBUSY || err == -FOVEA_EAGAIN || err == -FOVEA_EINVAL ||
	       err == -FOVEA_ENOMEM || err == -FOVEA_EHOSTUNREACH;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int fovea_retrans_skb(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx->skbaddr;
	struct retrans_count *c;
	__u32 zero = 0;
	__u16 segs = 1;
	__s32 err = 0;

	if (bpf_core_field_exists(ctx->err))
		err = ctx->err;
	if (skb) {
		struct tcp_skb_cb *cb = (struct tcp_skb_cb *)&skb->cb[0];

		segs = BPF_CORE_READ(cb, tcp_gso_segs);
		if (segs == 0)
			segs = 1;
	}
	c = bpf_map_lookup_elem(&counts, &zero);
	if (c) {
		if (aborted_before_count(err)) {
			c->aborted += segs;
		} else {
			c->segments += segs;
			c->events += 1;
		}
	}
	EMIT_RECORD(ctx, (__u8)ctx->state, RETRANS_KIND_SKB, segs, err);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_synack")
int fovea_retrans_synack(struct trace_event_raw_tcp_retransmit_synack *ctx)
{
	struct retrans_count *c;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&counts, &zero);
	if (c) {
		c->segments += 1;
		c->events += 1;
		c->synack += 1;
	}
	EMIT_RECORD(ctx, TCP_SYN_RECV, RETRANS_KIND_SYNACK, 1, 0);
	return 0;
}
