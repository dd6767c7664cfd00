// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * packetforward: packets and bytes per (ifindex, direction), counted at TC ingress and egress.
 *
 * At both hooks the kernel hands a TC program the frame with its L2 header in place (for
 * ingress, cls_bpf and tcx push mac_len back before running us), so __sk_buff.len is the
 * length a device's own statistics count (ip -s link: rx_bytes/tx_bytes on veth and most
 * virtual devices). One GSO/GRO skb counts as one packet, as veth counts it.
 */
#include "fovea.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct fwd_key {
	__u32 ifindex;
	__u32 direction; /* FOVEA_DIR_INGRESS or FOVEA_DIR_EGRESS */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct fwd_key);
	__type(value, struct fovea_count);
} counts SEC(".maps");

FOVEA_STATS_MAP();

static __always_inline int fwd_count(struct __sk_buff *skb, __u32 direction)
{
	struct fwd_key key = {
		.ifindex = skb->ifindex,
		.direction = direction,
	};

	fovea_count_add(&counts, &key, skb->len, &stats);
	/* never decide the packet's fate: let the next filter or the stack do that */
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int fovea_fwd_ingress(struct __sk_buff *skb)
{
	return fwd_count(skb, FOVEA_DIR_INGRESS);
}

SEC("classifier")
int fovea_fwd_egress(struct __sk_buff *skb)
{
	return fwd_count(skb, FOVEA_DIR_EGRESS);
}
