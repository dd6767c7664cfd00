/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The DNS feature of the datapath programs (datapath.bpf.c): every DNS message (UDP or TCP,
 * port 53 or 5353, IPv4 or IPv6) that enters the node's network through a watched interface is
 * copied, up to DP_DNS_CAPTURE bytes of the message, into the `records` ring buffer for the dns
 * receiver to parse in user space. Other packets cost one port comparison.
 *
 * Counted once per node. A message crosses two watched hooks when it is forwarded (pod to pod:
 * the client's interface at ingress, the server's at egress; pod to the network: the pod's
 * interface at ingress, the uplink at egress). Every ingress hook copies; an egress hook copies
 * only a packet that did not come in through a watched interface (skb->ingress_ifindex not in
 * `dns_ifaces`): one the host itself sent (ingress_ifindex 0: a DNS server or client in the
 * node's own network namespace) or one that arrived through an interface nobody watches. So
 * each message is copied at the first watched hook it meets on the node, whatever the path.
 *
 * TCP: every segment with payload is copied from its first byte after the 2-byte length prefix;
 * the prefix is the message length. User space tells a message's first segment from the ones
 * that continue it (it tracks the bytes still due per connection).
 *
 * Budget: at most settings.dns_rate_per_sec records per second (shared by all CPUs), beyond it
 * they are counted as capped; a full ring counts them as lost (FOVEA_STAT_RECORDS_*).
 *
 * `struct dns_record` has a #[repr(C)] mirror in src/ebpf/dns.rs with a size assertion.
 */
#ifndef FOVEA_DNS_BPF_H
#define FOVEA_DNS_BPF_H

#include "fovea.bpf.h"

/* Bit of dp_settings.features that belongs to DNS. */
#define DP_FEATURE_DNS 0x10

#define DP_DNS_PORT 53
#define DP_MDNS_PORT 5353
/* Bytes of a DNS message copied (the classic UDP limit; EDNS answers beyond it are cut). */
#define DP_DNS_CAPTURE 512
/* Ring size: ~1800 records of 576 bytes. */
#define DP_DNS_RING_BYTES (1 << 20)

FOVEA_RECORD_MAPS(DP_DNS_RING_BYTES);

/* The interfaces the datapath programs are attached to (user space keeps it current). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} dns_ifaces SEC(".maps");

/* One DNS message as a hook saw it. 576 bytes. */
struct dns_record {
	__u64 ts_ns;              /* bpf_ktime_get_boot_ns() (CLOCK_BOOTTIME) at the hook */
	struct fovea_tuple tuple; /* the packet's addresses and ports */
	__u32 ifindex;
	__u16 msg_len;  /* the message's length: UDP length - 8, or TCP's length prefix */
	__u16 seg_len;  /* the L4 payload bytes of this packet (TCP: prefix included) */
	__u16 captured; /* bytes of the message in data */
	__u8 direction; /* FOVEA_DIR_INGRESS or FOVEA_DIR_EGRESS */
	__u8 pad[5];
	__u8 data[DP_DNS_CAPTURE];
};

static __always_inline int dp_dns_port(__u16 port)
{
	return port == DP_DNS_PORT || port == DP_MDNS_PORT;
}

/*
 * Copies the DNS message of p (parsed by dp_parse: ports, l4_off, l3_end) if it is one and
 * this hook is where the node first sees it.
 */
static __always_inline void dp_dns(struct __sk_buff *skb, struct dp_pkt *p, __u32 cap)
{
	struct dns_record *rec;
	__u32 ingress, off, len, seg;
	__u8 l4[14];
	__u16 msg_len;

	if (p->key.protocol != FOVEA_IPPROTO_UDP && p->key.protocol != FOVEA_IPPROTO_TCP)
		return;
	if (!dp_dns_port(p->key.sport) && !dp_dns_port(p->key.dport))
		return;
	if (p->key.direction == FOVEA_DIR_EGRESS) {
		ingress = skb->ingress_ifindex;
		if (ingress && bpf_map_lookup_elem(&dns_ifaces, &ingress))
			return; /* copied where it came in */
	}
	if (p->l3_end <= p->l4_off)
		return;
	if (p->key.protocol == FOVEA_IPPROTO_UDP) {
		__u8 udp_len[2];

		off = p->l4_off + 8;
		if (p->l3_end <= off || bpf_skb_load_bytes(skb, p->l4_off + 4, udp_len, 2))
			return;
		seg = p->l3_end - off;
		len = seg;
		/* the datagram's own length: more than this packet holds when it is IP-fragmented */
		msg_len = ((__u16)udp_len[0] << 8 | udp_len[1]) - 8;
	} else {
		if (dp_load(skb, p->l4_off, l4, 14))
			return;
		off = p->l4_off + (l4[12] >> 4) * 4;
		if (p->l3_end <= off)
			return; /* no payload: handshake, ACK, FIN */
		seg = p->l3_end - off;
		if (seg < 2) {
			len = 0;
			msg_len = 0;
		} else {
			__u8 prefix[2];

			if (bpf_skb_load_bytes(skb, off, prefix, 2))
				return;
			msg_len = ((__u16)prefix[0] << 8) | prefix[1];
			off += 2;
			len = seg - 2;
		}
	}
	if (len > DP_DNS_CAPTURE)
		len = DP_DNS_CAPTURE;

	rec = fovea_record_reserve(&records, &rate, &stats, cap, sizeof(*rec));
	if (!rec)
		return;
	rec->ts_ns = bpf_ktime_get_boot_ns();
	__builtin_memcpy(rec->tuple.saddr, p->key.saddr, 16);
	__builtin_memcpy(rec->tuple.daddr, p->key.daddr, 16);
	rec->tuple.sport = p->key.sport;
	rec->tuple.dport = p->key.dport;
	rec->tuple.family = p->key.family;
	rec->tuple.protocol = p->key.protocol;
	rec->tuple.pad[0] = 0;
	rec->tuple.pad[1] = 0;
	rec->ifindex = skb->ifindex;
	rec->msg_len = msg_len;
	rec->seg_len = seg > 0xffff ? 0xffff : seg;
	rec->direction = p->key.direction;
	__builtin_memset(rec->pad, 0, sizeof(rec->pad));
	/* the verifier wants the copy's length visibly within data[] */
	if (len > 0 && len <= DP_DNS_CAPTURE && bpf_skb_load_bytes(skb, off, rec->data, len) == 0) {
		rec->captured = len;
	} else {
		rec->captured = 0;
	}
	fovea_record_submit(rec, &stats);
}

#endif
