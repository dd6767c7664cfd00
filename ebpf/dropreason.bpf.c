// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * dropreason: packets and bytes per (kernel drop reason, direction) from skb:kfree_skb, plus
 * rate-capped flow records through a ring buffer.
 *
 * Two entry points share one body: tp_btf/kfree_skb (preferred: BTF-typed arguments, cheaper)
 * and the plain tracepoint skb/kfree_skb for kernels where tp_btf cannot load. User space
 * loads exactly one of them.
 *
 * Reason values differ between kernels, so the ones we filter on are CO-RE enum relocations
 * resolved against the running kernel's BTF at load time.
 *
 * Direction: INGRESS when the skb was received on a device (skb_iif != 0: delivered locally
 * or being forwarded), EGRESS when it was generated on this host (no input device, but owned
 * by a socket or already bound to an output device), UNKNOWN otherwise.
 *
 * Bytes: the network-layer length of the packet at free time (see fovea_parse_skb), so a
 * drop's size does not depend on how far the stack had pulled headers.
 */
#include "fovea.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Count SKB_DROP_REASON_NOT_SPECIFIED too (many legacy kfree_skb() calls report it). */
const volatile __u8 include_unspecified = 0;
/* Flow records per second (all CPUs); 0 disables records. */
const volatile __u32 record_rate_per_sec = 1000;

struct drop_key {
	__u32 reason;
	__u32 direction;
};

/* Mirrored by `RawDropRecord` in src/ebpf/dropreason.rs (64 bytes). */
struct drop_record {
	__u64 boot_ns;
	struct fovea_tuple tuple;
	__u32 reason;
	__u32 ifindex;
	__u32 bytes;
	__u8 direction;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct drop_key);
	__type(value, struct fovea_count);
} counts SEC(".maps");

FOVEA_STATS_MAP();
FOVEA_RECORD_MAPS(256 * 1024);

static __always_inline int is_not_a_drop(__u32 reason)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 1;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_NOT_DROPPED_YET) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_NOT_DROPPED_YET))
		return 1;
	if (!include_unspecified &&
	    bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED))
		return 1;
	return 0;
}

/* btf: skb is a BTF-typed pointer (tp_btf): read its fields directly (see FOVEA_SKB_READ). */
static __always_inline void handle_drop(struct sk_buff *skb, __u32 reason, int btf)
{
	struct fovea_tuple tuple = {};
	struct drop_key key = {};
	struct drop_record *rec;
	struct net_device *dev;
	__u32 bytes, ifindex;
	int iif;

	if (!skb || is_not_a_drop(reason))
		return;

	iif = FOVEA_SKB_READ(btf, skb, skb_iif);
	dev = FOVEA_SKB_READ(btf, skb, dev);
	key.reason = reason;
	if (iif)
		key.direction = FOVEA_DIR_INGRESS;
	else if (dev || FOVEA_SKB_READ(btf, skb, sk))
		key.direction = FOVEA_DIR_EGRESS;
	else
		key.direction = FOVEA_DIR_UNKNOWN;

	/* the 5-tuple only matters for records: with records off, only the length is read */
	bytes = fovea_parse_skb(skb, &tuple, btf, record_rate_per_sec != 0);
	fovea_count_add(&counts, &key, bytes, &stats);

	/* flow records are for IP packets only: the 5-tuple is their point */
	if (!tuple.family)
		return;
	rec = fovea_record_reserve(&records, &rate, &stats, record_rate_per_sec, sizeof(*rec));
	if (!rec)
		return;
	ifindex = dev ? (btf ? dev->ifindex : BPF_CORE_READ(dev, ifindex)) : iif;
	rec->boot_ns = bpf_ktime_get_boot_ns();
	rec->tuple = tuple;
	rec->reason = reason;
	rec->ifindex = ifindex;
	rec->bytes = bytes;
	rec->direction = key.direction;
	rec->pad[0] = 0;
	rec->pad[1] = 0;
	rec->pad[2] = 0;
	fovea_record_submit(rec, &stats);
}

/* args: skb, location, reason (5.17+), rx_sk (6.11+) */
SEC("tp_btf/kfree_skb")
int fovea_drop_btf(__u64 *ctx)
{
	handle_drop((struct sk_buff *)ctx[0], (__u32)ctx[2], 1);
	return 0;
}

SEC("tracepoint/skb/kfree_skb")
int fovea_drop_tp(struct trace_event_raw_kfree_skb *ctx)
{
	handle_drop((struct sk_buff *)ctx->skbaddr, ctx->reason, 0);
	return 0;
}
