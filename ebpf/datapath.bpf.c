// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * datapath: the programs on pod interfaces and uplinks, one per TC hook, shared by every
 * feature that needs to see pod traffic. Which features run is switched at run time through
 * `settings.features` (written by user space, src/ebpf/datapath.rs), so a second receiver (DNS)
 * rides on the same attachment instead of adding a program to every packet's path.
 *
 * Features: flows (flows.bpf.h) and DNS message capture (dns.bpf.h). Also here: fovea_rtt_recv /
 * fovea_rtt_send (tracepoints at every TCP read and write) and fovea_rtt_close (TCP state
 * changes), the kernel's smoothed RTT per TCP socket for the flows receiver's latency (not TC
 * programs; loaded only when asked for).
 *
 * Entry points per hook and link type: the Ethernet variants parse a 14-byte L2 header (and one
 * in-band VLAN tag), the _l3 variants are for devices without one (tun, WireGuard, ipip). All
 * return TC_ACT_UNSPEC: they never decide a packet's fate.
 *
 * Parsing: IPv4 (options skipped by IHL; only the first fragment carries ports), IPv6 with its
 * extension headers walked (hop-by-hop, routing, fragment, destination options and AH, at most
 * DP_IPV6_MAX_EXT of them; behind ESP or anything else the protocol is that header and there
 * are no ports), TCP/UDP/SCTP ports, TCP flags, ICMP/ICMPv6 type and code. Headers are read
 * straight from the linear packet data when they are there, with bpf_skb_load_bytes otherwise.
 */
#include "fovea.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Run-time settings in .bss; mirrored by `RawSettings` in src/ebpf/datapath.rs. */
struct dp_settings {
	__u32 features;      /* DP_FEATURE_* */
	__u16 ephemeral_lo;  /* client ports for DP_FEATURE_COLLAPSE_PORTS: [lo, hi] */
	__u16 ephemeral_hi;
	__u32 dns_rate_per_sec; /* DP_FEATURE_DNS: records per second, all CPUs together */
	__u32 rtt_every_jiffies; /* fovea_rtt_*: copy a socket at most once per this many jiffies */
};

struct dp_settings settings;

FOVEA_STATS_MAP();

#include "flows.bpf.h"

#define DP_ETH_HLEN 14
#define DP_ETH_P_8021Q 0x8100
#define DP_ETH_P_8021AD 0x88A8
#define DP_IPV6_MAX_EXT 6
/* No header we parse starts further in than this (keeps packet offsets bounded). */
#define DP_MAX_L4_OFFSET 512

/* Copies len bytes at offset off of the packet to `to`; 0 on success. */
static __always_inline int dp_load(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (off > DP_MAX_L4_OFFSET)
		return -1;
	if (data + off + len <= end) {
		__builtin_memcpy(to, data + off, len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, to, len);
}

#include "dns.bpf.h"

/* Reads ports (or ICMP type/code) and TCP flags of the L4 header at `off`. */
static __always_inline void dp_parse_l4(struct __sk_buff *skb, __u32 off, struct dp_pkt *p)
{
	__u8 b[14];

	switch (p->key.protocol) {
	case FOVEA_IPPROTO_TCP:
		if (dp_load(skb, off, b, 14))
			return;
		p->tcp_flags = b[13];
		break;
	case FOVEA_IPPROTO_UDP:
	case FOVEA_IPPROTO_SCTP:
		if (dp_load(skb, off, b, 4))
			return;
		break;
	case FOVEA_IPPROTO_ICMP:
	case FOVEA_IPPROTO_ICMPV6:
		if (dp_load(skb, off, b, 2))
			return;
		p->key.dport = ((__u16)b[0] << 8) | b[1];
		p->l4_off = off;
		return;
	default:
		return;
	}
	p->key.sport = ((__u16)b[0] << 8) | b[1];
	p->key.dport = ((__u16)b[2] << 8) | b[3];
	p->l4_off = off;
}

static __always_inline int dp_parse_ipv4(struct __sk_buff *skb, __u32 nh, struct dp_pkt *p)
{
	struct fovea_ipv4_hdr ip;

	if (dp_load(skb, nh, &ip, sizeof(ip)) || (ip.ver_ihl >> 4) != 4)
		return -1;
	__builtin_memcpy(p->key.saddr, ip.saddr, 4);
	__builtin_memcpy(p->key.daddr, ip.daddr, 4);
	p->key.family = FOVEA_AF_INET;
	p->key.protocol = ip.protocol;
	p->l3_end = nh + bpf_ntohs(ip.tot_len);
	/* fragments after the first have no L4 header */
	if ((ip.frag_off & bpf_htons(0x1fff)) == 0)
		dp_parse_l4(skb, nh + (ip.ver_ihl & 0x0f) * 4, p);
	return 0;
}

static __always_inline int dp_parse_ipv6(struct __sk_buff *skb, __u32 nh, struct dp_pkt *p)
{
	struct fovea_ipv6_hdr ip6;
	__u32 off = nh + sizeof(ip6);
	__u8 next, h[8];
	int i;

	if (dp_load(skb, nh, &ip6, sizeof(ip6)) || (ip6.ver_tc >> 4) != 6)
		return -1;
	__builtin_memcpy(p->key.saddr, ip6.saddr, 16);
	__builtin_memcpy(p->key.daddr, ip6.daddr, 16);
	p->key.family = FOVEA_AF_INET6;
	p->l3_end = nh + sizeof(ip6) + bpf_ntohs(ip6.payload_len);
	next = ip6.nexthdr;

	for (i = 0; i < DP_IPV6_MAX_EXT; i++) {
		switch (next) {
		case 0:  /* hop-by-hop options */
		case 43: /* routing */
		case 60: /* destination options */
			if (dp_load(skb, off, h, 2))
				goto no_l4;
			next = h[0];
			off += ((__u32)h[1] + 1) * 8;
			continue;
		case 51: /* authentication header: length in 4-byte units, minus 2 */
			if (dp_load(skb, off, h, 2))
				goto no_l4;
			next = h[0];
			off += ((__u32)h[1] + 2) * 4;
			continue;
		case 44: /* fragment */
			if (dp_load(skb, off, h, 8))
				goto no_l4;
			next = h[0];
			off += 8;
			/* fragment offset (13 bits) != 0: not the first fragment, no L4 header */
			if ((((__u16)h[2] << 8) | h[3]) & 0xfff8) {
				p->key.protocol = next;
				return 0;
			}
			continue;
		default:
			break;
		}
		break;
	}
	p->key.protocol = next;
	dp_parse_l4(skb, off, p);
	return 0;
no_l4:
	p->key.protocol = next;
	return 0;
}

/*
 * Fills p from the packet; returns -1 when it is not IPv4/IPv6 (or its IP header cannot be
 * read). eth: the frame starts with an Ethernet header.
 */
static __always_inline int dp_parse(struct __sk_buff *skb, int eth, struct dp_pkt *p)
{
	__u16 proto = skb->protocol;
	__u32 nh = 0;

	if (eth) {
		nh = DP_ETH_HLEN;
		/* a VLAN tag the device did not strip: skip it and look at the inner type */
		if (proto == bpf_htons(DP_ETH_P_8021Q) || proto == bpf_htons(DP_ETH_P_8021AD)) {
			__be16 inner;

			if (dp_load(skb, DP_ETH_HLEN + 2, &inner, 2))
				return -1;
			proto = inner;
			nh += 4;
		}
	}
	if (skb->len <= nh)
		return -1;
	p->bytes = skb->len - nh;
	if (proto == bpf_htons(FOVEA_ETH_P_IP))
		return dp_parse_ipv4(skb, nh, p);
	if (proto == bpf_htons(FOVEA_ETH_P_IPV6))
		return dp_parse_ipv6(skb, nh, p);
	return -1;
}

static __always_inline int dp_run(struct __sk_buff *skb, int eth, __u8 direction)
{
	__u32 features = settings.features;
	struct dp_pkt p;

	if (!(features & (DP_FEATURE_FLOWS | DP_FEATURE_DNS)))
		return TC_ACT_UNSPEC;
	__builtin_memset(&p, 0, sizeof(p));
	p.key.ifindex = skb->ifindex;
	p.key.direction = direction;
	if (dp_parse(skb, eth, &p)) {
		if (features & DP_FEATURE_FLOWS)
			dp_iface_add(skb->ifindex, direction, DP_IFACE_NOT_IP, 1, skb->len);
		return TC_ACT_UNSPEC;
	}
	/* before flows, which may zero the client's port in p.key */
	if (features & DP_FEATURE_DNS)
		dp_dns(skb, &p, settings.dns_rate_per_sec);
	if (features & DP_FEATURE_FLOWS)
		dp_flow_count(&p, features, settings.ephemeral_lo, settings.ephemeral_hi);
	return TC_ACT_UNSPEC;
}

/*
 * The kernel's tick clock, for user space to turn flow_value.last_jiffies into ns: run on demand
 * with BPF_PROG_TEST_RUN (never attached), it stores jiffies and CLOCK_MONOTONIC together.
 * Mirrored by `RawTick` in src/ebpf/tick.rs.
 */
struct dp_tick {
	__u64 jiffies;
	__u64 mono_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dp_tick);
} tick SEC(".maps");

SEC("classifier")
int fovea_dp_tick(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct dp_tick *t = bpf_map_lookup_elem(&tick, &zero);

	if (t) {
		t->jiffies = bpf_jiffies64();
		t->mono_ns = bpf_ktime_get_ns();
	}
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int fovea_dp_ingress(struct __sk_buff *skb)
{
	return dp_run(skb, 1, FOVEA_DIR_INGRESS);
}

SEC("classifier")
int fovea_dp_egress(struct __sk_buff *skb)
{
	return dp_run(skb, 1, FOVEA_DIR_EGRESS);
}

SEC("classifier")
int fovea_dp_ingress_l3(struct __sk_buff *skb)
{
	return dp_run(skb, 0, FOVEA_DIR_INGRESS);
}

SEC("classifier")
int fovea_dp_egress_l3(struct __sk_buff *skb)
{
	return dp_run(skb, 0, FOVEA_DIR_EGRESS);
}

/*
 * TCP RTT: the kernel's own smoothed RTT of every TCP socket on the node, per socket.
 *
 * Hooks: tp_btf/tcp_rcv_space_adjust and tp_btf/tcp_sendmsg_locked, i.e. every time an
 * application reads from or writes to a TCP socket (recvmsg, read, splice, sendmsg, sendfile ...),
 * in any network namespace. Why these:
 *  - srtt is updated when the kernel processes an incoming ACK; by the time the application
 *    reads or writes, the segments that woke it are processed, so the value read here is the
 *    kernel's current one, exactly what `ss -ti` (tcp_info) reports. tp_btf/tcp_probe fires at
 *    the top of tcp_rcv_established, before the ACK is processed, and would always lag one
 *    segment behind;
 *  - they fire per system call, not per segment: a 64 KiB write is one event where the
 *    receive path sees ~45 segments;
 *  - they see every socket, including those that existed before fovea started; sock_ops only
 *    learns of sockets established after it is attached to a cgroup (and needs cgroup v2 with
 *    every pod below the attach point);
 *  - BTF-typed tracepoints: no kprobe, no fentry/fexit (which need ftrace direct calls, not
 *    available on every kernel build: this project's own CI VM refuses them), no probe_read.
 * What they miss: a socket whose application neither reads nor writes while ACKs arrive keeps
 * its last value until it does (its srtt is then not being used by anyone either).
 * Cost: each call first looks the socket up in `rtt_socks`, socket-local storage (the socket's
 * own storage cache, no hash), which remembers when the socket was last copied; the copy into
 * `rtt` (an 8-byte-key hash lookup and a few stores) is made at most once per
 * settings.rtt_every_jiffies (100 ms, set by user space, which knows the tick) per socket, so
 * the value kept is the socket's srtt as of a call at most that long before its latest one.
 * fovea_rtt_close (tp_btf/inet_sock_set_state, a few times per connection) copies a tracked
 * socket once more when it enters TCP_CLOSE, unthrottled, if its values changed since the last
 * copy: its final value is kept, and a quiet socket gets no extra sample.
 * (A BPF iterator over `rtt_socks` reading live values at each drain would cost nothing per
 * call, but iterator programs do not load on every kernel build: this project's CI VM refuses
 * them with EPERM.)
 *
 * Keyed by socket cookie (unique for the kernel's lifetime, so a reused socket address never
 * inherits an old entry); LRU so closed sockets age out, and user space deletes entries idle
 * longer than idle_timeout. Loopback peers are skipped: they are not network latency.
 */
struct rtt_value {
	struct fovea_tuple tuple; /* local -> remote, read once when the entry is made */
	__u64 updated_jiffies;    /* jiffies of the latest update (inlined; a clock helper costs more) */
	__u32 srtt_us;            /* tcp_sock.srtt_us >> 3, as tcp_info.tcpi_rtt */
	__u32 rttvar_us;          /* tcp_sock.mdev_us >> 2, as tcp_info.tcpi_rttvar */
	__u32 samples;            /* updates since the entry was made */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct rtt_value);
} rtt SEC(".maps");

/* Per socket: jiffies of its last copy into `rtt` (inlined; clock helpers cost more, and the
 * coarse clock is not allowed in tracing programs). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} rtt_socks SEC(".maps");

#define DP_TCP_CLOSE 7

static __always_inline int dp_loopback(const struct fovea_tuple *t)
{
	if (t->family == FOVEA_AF_INET)
		return t->daddr[0] == 127;
	for (int i = 0; i < 15; i++)
		if (t->daddr[i])
			return 0;
	return t->daddr[15] == 1;
}

/* The socket's current srtt and mdev, as tcp_info reports them. */
static __always_inline void dp_rtt_fill(struct rtt_value *v, struct tcp_sock *tp)
{
	v->srtt_us = tp->srtt_us >> 3;
	v->rttvar_us = tp->mdev_us >> 2;
	v->samples += 1;
	v->updated_jiffies = bpf_jiffies64();
}

/* Copies the socket's current values into `rtt`; with `closing`, only into an entry that is
 * there and only when they changed since (no new entry, no extra sample for a quiet socket). */
static __always_inline int dp_rtt_copy(struct sock *sk, int closing)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	struct rtt_value *v, nv;
	__u64 cookie;

	if (!tp)
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	v = bpf_map_lookup_elem(&rtt, &cookie);
	if (v) {
		/* the socket is locked while its application reads, writes or closes it: one CPU at a time */
		if (!closing || v->srtt_us != tp->srtt_us >> 3 || v->rttvar_us != tp->mdev_us >> 2)
			dp_rtt_fill(v, tp);
		return 0;
	}
	if (closing)
		return 0;

	__builtin_memset(&nv, 0, sizeof(nv));
	fovea_tcp_tuple(&nv.tuple, &sk->__sk_common);
	if (dp_loopback(&nv.tuple))
		return 0;
	dp_rtt_fill(&nv, tp);
	bpf_map_update_elem(&rtt, &cookie, &nv, BPF_ANY);
	return 0;
}

/* At most one copy per socket per settings.rtt_every_jiffies. */
static __always_inline int dp_rtt(struct sock *sk)
{
	__u64 *last = bpf_sk_storage_get(&rtt_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	__u64 now = bpf_jiffies64();

	if (last) {
		if (*last && now - *last < settings.rtt_every_jiffies)
			return 0;
		*last = now;
	}
	return dp_rtt_copy(sk, 0);
}

/* args: sk */
SEC("tp_btf/tcp_rcv_space_adjust")
int fovea_rtt_recv(__u64 *ctx)
{
	return dp_rtt((struct sock *)ctx[0]);
}

/* args: sk, msg, skb, size_goal */
SEC("tp_btf/tcp_sendmsg_locked")
int fovea_rtt_send(__u64 *ctx)
{
	return dp_rtt((struct sock *)ctx[0]);
}

/* args: sk, oldstate, newstate: a socket tracked before is copied once more as it closes */
SEC("tp_btf/inet_sock_set_state")
int fovea_rtt_close(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];

	if ((int)ctx[2] != DP_TCP_CLOSE || !bpf_sk_storage_get(&rtt_socks, sk, 0, 0))
		return 0;
	return dp_rtt_copy(sk, 1);
}
