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

/* Adds one attempt of `segs` segments to the counters. */
static __always_inline void retrans_count_add(__u16 segs, __s32 err, int synack)
{
	struct retrans_count *c;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&counts, &zero);
	if (!c)
		return;
	if (aborted_before_count(err)) {
		c->aborted += segs;
		return;
	}
	c->segments += segs;
	c->events += 1;
	if (synack)
		c->synack += 1;
}

/* Segments in a retransmitted skb: tcp_skb_pcount(skb), at least one. */
static __always_inline __u16 retrans_segs(struct sk_buff *skb)
{
	struct tcp_skb_cb *cb;
	__u16 segs;

	if (!skb)
		return 1;
	cb = (struct tcp_skb_cb *)&skb->cb[0];
	segs = BPF_CORE_READ(cb, tcp_gso_segs);
	return segs ? segs : 1;
}

/*
 * BTF-typed tracepoints (preferred, docs/ebpf.md): the program gets the socket and skb pointers
 * and reads what it needs; a classic tracepoint program runs after perf has formatted the whole
 * event, and in our tests it now and then missed a retransmission outright.
 */
static __always_inline void retrans_emit_btf(const struct sock_common *c, __u8 state, __u8 kind, __u16 segs,
					     __s32 err)
{
	struct retrans_record *rec;

	rec = fovea_record_reserve(&records, &rate, &stats, record_rate_per_sec, sizeof(*rec));
	if (!rec)
		return;
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->boot_ns = bpf_ktime_get_boot_ns();
	fovea_tcp_tuple(&rec->tuple, c);
	rec->state = state;
	rec->kind = kind;
	rec->segments = segs;
	rec->err = err;
	fovea_record_submit(rec, &stats);
}

/* args: sk, skb, err (6.14+; older kernels have no err: CO-RE tells) */
SEC("tp_btf/tcp_retransmit_skb")
int fovea_retrans_skb_btf(__u64 *ctx)
{
	const struct sock *sk = (const struct sock *)ctx[0];
	__u16 segs = retrans_segs((struct sk_buff *)ctx[1]);
	__s32 err = 0;

	if (bpf_core_field_exists(((struct trace_event_raw_tcp_retransmit_skb *)0)->err))
		err = (__s32)ctx[2];
	retrans_count_add(segs, err, 0);
	if (sk)
		retrans_emit_btf(&sk->__sk_common, sk->__sk_common.skc_state, RETRANS_KIND_SKB, segs, err);
	return 0;
}

/* args: sk (the listener), req (the request socket whose SYN-ACK went out again) */
SEC("tp_btf/tcp_retransmit_synack")
int fovea_retrans_synack_btf(__u64 *ctx)
{
	const struct request_sock *req = (const struct request_sock *)ctx[1];

	retrans_count_add(1, 0, 1);
	if (req)
		retrans_emit_btf(&req->__req_common, TCP_SYN_RECV, RETRANS_KIND_SYNACK, 1, 0);
	return 0;
}

/* Classic tracepoints: the fallback where tp_btf cannot load (the same accounting). */
SEC("tracepoint/tcp/tcp_retransmit_skb")
int fovea_retrans_skb(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	__u16 segs = retrans_segs((struct sk_buff *)ctx->skbaddr);
	__s32 err = 0;

	if (bpf_core_field_exists(ctx->err))
		err = ctx->err;
	retrans_count_add(segs, err, 0);
	EMIT_RECORD(ctx, (__u8)ctx->state, RETRANS_KIND_SKB, segs, err);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_synack")
int fovea_retrans_synack(struct trace_event_raw_tcp_retransmit_synack *ctx)
{
	retrans_count_add(1, 0, 1);
	EMIT_RECORD(ctx, TCP_SYN_RECV, RETRANS_KIND_SYNACK, 1, 0);
	return 0;
}
