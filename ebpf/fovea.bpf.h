/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Helpers shared by fovea's probes: in-kernel counters, low-rate records through a ring
 * buffer (with a per-second cap and kernel-side loss accounting), and IPv4/IPv6 header
 * parsing from a struct sk_buff.
 *
 * Every struct that crosses into user space has a #[repr(C)] mirror in src/ebpf/ with a
 * size assertion; change both together.
 */
#ifndef FOVEA_BPF_H
#define FOVEA_BPF_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "kernel.bpf.h"

#define FOVEA_ETH_P_IP 0x0800
#define FOVEA_ETH_P_IPV6 0x86DD
#define FOVEA_AF_INET 2
#define FOVEA_AF_INET6 10
#define FOVEA_IPPROTO_ICMP 1
#define FOVEA_IPPROTO_TCP 6
#define FOVEA_IPPROTO_UDP 17
#define FOVEA_IPPROTO_ICMPV6 58
#define FOVEA_IPPROTO_SCTP 132

/* Direction codes, mirrored by `Direction` in src/ebpf/mod.rs. */
#define FOVEA_DIR_UNKNOWN 0
#define FOVEA_DIR_INGRESS 1
#define FOVEA_DIR_EGRESS 2

/* Indices into each object's per-CPU `stats` array, mirrored in src/ebpf/telemetry.rs. */
enum fovea_stat {
	FOVEA_STAT_RECORDS_EMITTED = 0, /* records submitted to the ring buffer */
	FOVEA_STAT_RECORDS_CAPPED = 1,  /* records suppressed by the per-second cap */
	FOVEA_STAT_RECORDS_LOST = 2,    /* bpf_ringbuf_reserve failed: ring full */
	FOVEA_STAT_COUNTER_FULL = 3,    /* a counter key could not be inserted: map full */
	FOVEA_STAT_MAX = 4,
};

/* Packets and bytes, summed over CPUs in user space. */
struct fovea_count {
	__u64 packets;
	__u64 bytes;
};

/*
 * A 5-tuple. Addresses in network byte order (IPv4 in the first 4 bytes, rest zero), ports in
 * host byte order, 0 for protocols without ports. family is AF_INET/AF_INET6, 0 when the
 * packet is not IP. Mirrored by `RawTuple` in src/ebpf/record.rs (40 bytes).
 */
struct fovea_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 protocol;
	__u8 pad[2];
};

/* Per-second record budget, one global entry shared by all CPUs. */
struct fovea_rate {
	__u64 second;
	__u64 used;
};

/* Declares the per-CPU `stats` array every object exports. */
#define FOVEA_STATS_MAP()                                                                  \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                   \
		__uint(max_entries, FOVEA_STAT_MAX);                                       \
		__type(key, __u32);                                                        \
		__type(value, __u64);                                                      \
	} stats SEC(".maps")

/* Declares the `records` ring buffer and its `rate` budget. Size: power of two pages. */
#define FOVEA_RECORD_MAPS(ring_bytes)                                                      \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                                        \
		__uint(max_entries, ring_bytes);                                           \
	} records SEC(".maps");                                                            \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                          \
		__uint(max_entries, 1);                                                    \
		__type(key, __u32);                                                        \
		__type(value, struct fovea_rate);                                          \
	} rate SEC(".maps")

static __always_inline void fovea_stat_inc(void *stats_map, __u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(stats_map, &stat);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

/*
 * Adds `packets` packets of `bytes` bytes in all to the per-CPU counter at `key`, creating it on
 * first use. A full map is counted in FOVEA_STAT_COUNTER_FULL instead of failing silently.
 */
static __always_inline void fovea_count_add_n(void *counts_map, const void *key, __u64 packets,
					      __u64 bytes, void *stats_map)
{
	struct fovea_count *c = bpf_map_lookup_elem(counts_map, key);

	if (!c) {
		struct fovea_count zero = {};

		bpf_map_update_elem(counts_map, key, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(counts_map, key);
		if (!c) {
			fovea_stat_inc(stats_map, FOVEA_STAT_COUNTER_FULL);
			return;
		}
	}
	c->packets += packets;
	c->bytes += bytes;
}

/* Adds one packet of `bytes` to the per-CPU counter at `key` (fovea_count_add_n). */
static __always_inline void fovea_count_add(void *counts_map, const void *key, __u64 bytes,
					    void *stats_map)
{
	fovea_count_add_n(counts_map, key, 1, bytes, stats_map);
}

/*
 * Reserves `size` bytes in the ring buffer if this second's budget allows. The budget is
 * shared by all CPUs; its reset is not atomic, so a second may let through a few (at most one
 * per CPU) records more than `cap`. cap == 0 disables records. Returns NULL when capped (counted
 * in FOVEA_STAT_RECORDS_CAPPED) or when the ring is full (FOVEA_STAT_RECORDS_LOST).
 */
static __always_inline void *fovea_record_reserve(void *ring, void *rate_map, void *stats_map,
						  __u32 cap, __u64 size)
{
	__u32 zero = 0;
	struct fovea_rate *r;
	__u64 second;
	void *rec;

	if (cap == 0)
		return NULL;
	r = bpf_map_lookup_elem(rate_map, &zero);
	if (!r)
		return NULL;
	second = bpf_ktime_get_ns() / 1000000000ULL;
	if (r->second != second) {
		r->second = second;
		r->used = 0;
	}
	if (r->used >= cap) {
		fovea_stat_inc(stats_map, FOVEA_STAT_RECORDS_CAPPED);
		return NULL;
	}
	__sync_fetch_and_add(&r->used, 1);
	rec = bpf_ringbuf_reserve(ring, size, 0);
	if (!rec) {
		fovea_stat_inc(stats_map, FOVEA_STAT_RECORDS_LOST);
		return NULL;
	}
	return rec;
}

static __always_inline void fovea_record_submit(void *rec, void *stats_map)
{
	bpf_ringbuf_submit(rec, 0);
	fovea_stat_inc(stats_map, FOVEA_STAT_RECORDS_EMITTED);
}

/* Minimal wire headers, so no uapi networking headers are needed. */
struct fovea_ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct fovea_ipv6_hdr {
	__u8 ver_tc;
	__u8 tc_flow[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

static __always_inline int fovea_has_ports(__u8 protocol)
{
	return protocol == FOVEA_IPPROTO_TCP || protocol == FOVEA_IPPROTO_UDP ||
	       protocol == FOVEA_IPPROTO_SCTP;
}

/*
 * Reads skb->field: directly when `btf` (the skb is a BTF-typed pointer, as in tp_btf programs:
 * one load, relocated by CO-RE), else through bpf_probe_read_kernel (plain tracepoints, where
 * it is an untyped address). Each probe read is a helper call that costs tens of ns
 * (docs/performance.md: fovea_drop_btf went from ~400 to ~100 ns by reading directly); `btf` is
 * a constant at every call site, so only one branch is compiled.
 */
#define FOVEA_SKB_READ(btf, skb, field) ((btf) ? (skb)->field : BPF_CORE_READ(skb, field))

/*
 * The tuple of a TCP socket, local -> remote, read through its BTF pointer (tp_btf arguments):
 * a full socket's or a request socket's common part.
 */
static __always_inline void fovea_tcp_tuple(struct fovea_tuple *t, const struct sock_common *c)
{
	t->family = c->skc_family == FOVEA_AF_INET6 ? FOVEA_AF_INET6 : FOVEA_AF_INET;
	t->protocol = FOVEA_IPPROTO_TCP;
	t->sport = c->skc_num;
	t->dport = bpf_ntohs(c->skc_dport);
	if (t->family == FOVEA_AF_INET) {
		__be32 s = c->skc_rcv_saddr, d = c->skc_daddr;

		__builtin_memcpy(t->saddr, &s, 4);
		__builtin_memcpy(t->daddr, &d, 4);
	} else {
		BPF_CORE_READ_INTO(&t->saddr, c, skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->daddr, c, skc_v6_daddr.in6_u.u6_addr8);
	}
}

/*
 * Parses the IPv4/IPv6 header at skb->network_header into `t` (zeroed by the caller) and
 * returns the network-layer length of the packet: skb->len corrected by how far skb->data is
 * from the network header, i.e. the IP packet's size no matter where in the stack the skb is
 * (L2 pushed or transport pulled). Without a recognisable IP header it returns skb->len and
 * leaves t->family at 0. With `tuple` false only the length is computed (one probe read of the
 * header's first byte instead of the whole header and the ports). IPv6 extension headers are
 * not walked: ports stay 0 behind them (the flows datapath walks them; drops and retransmits
 * keep this cheaper parse).
 */
static __always_inline __u32 fovea_parse_skb(struct sk_buff *skb, struct fovea_tuple *t, int btf, int tuple)
{
	unsigned char *head = FOVEA_SKB_READ(btf, skb, head);
	unsigned char *data = FOVEA_SKB_READ(btf, skb, data);
	__u32 len = FOVEA_SKB_READ(btf, skb, len);
	__u16 nh = FOVEA_SKB_READ(btf, skb, network_header);
	__be16 proto = FOVEA_SKB_READ(btf, skb, protocol);
	__u64 data_off = data - head;
	__u64 l3_len;
	__u32 l4_off;
	__u8 ver;

	if (nh == 0xffff || nh > data_off + len)
		return len;
	l3_len = len + data_off - nh;
	if (bpf_probe_read_kernel(&ver, 1, head + nh))
		return len;
	ver >>= 4;
	if (!(proto == bpf_htons(FOVEA_ETH_P_IP) && ver == 4) && !(proto == bpf_htons(FOVEA_ETH_P_IPV6) && ver == 6))
		return len;
	if (!tuple)
		return l3_len;

	if (ver == 4) {
		struct fovea_ipv4_hdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return len;
		__builtin_memcpy(t->saddr, ip.saddr, 4);
		__builtin_memcpy(t->daddr, ip.daddr, 4);
		t->family = FOVEA_AF_INET;
		t->protocol = ip.protocol;
		/* only the first fragment carries ports */
		if ((ip.frag_off & bpf_htons(0x1fff)) != 0 || !fovea_has_ports(ip.protocol))
			return l3_len;
		l4_off = nh + (ip.ver_ihl & 0x0f) * 4;
	} else {
		struct fovea_ipv6_hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return len;
		__builtin_memcpy(t->saddr, ip6.saddr, 16);
		__builtin_memcpy(t->daddr, ip6.daddr, 16);
		t->family = FOVEA_AF_INET6;
		t->protocol = ip6.nexthdr;
		if (!fovea_has_ports(ip6.nexthdr))
			return l3_len;
		l4_off = nh + sizeof(ip6);
	}

	if (l4_off + 4 <= data_off + len) {
		__be16 ports[2];

		if (!bpf_probe_read_kernel(ports, sizeof(ports), head + l4_off)) {
			t->sport = bpf_ntohs(ports[0]);
			t->dport = bpf_ntohs(ports[1]);
		}
	}
	return l3_len;
}

#endif
