/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The flows feature of the datapath programs (datapath.bpf.c): per-flow packets, bytes, TCP
 * flag counts, first/last seen and TCP handshake durations, aggregated in the kernel and
 * drained by user space once per collection interval. Nothing is sent to user space per
 * packet.
 *
 * Double buffering. Programs count into the hash map that slot 0 of `flow_tables` points to.
 * To drain, user space points slot 0 at the other map; updating a map-of-maps waits for an RCU
 * grace period, so when that call returns no program still holds the old map, and user space
 * reads and empties it (BPF_MAP_LOOKUP_AND_DELETE_BATCH) with nobody writing to it. No packet is
 * counted twice or lost between drains, and every drain yields exactly the deltas since the
 * previous one.
 *
 * A full table never loses counts silently: the packet goes to the (ifindex, direction)
 * OVERFLOW counter in `iface_counts`, so flows + overflow always add up to what crossed the
 * interface. Frames that are not IP (ARP, LLDP ...) are counted there too, as NOT_IP.
 *
 * Every struct here has a #[repr(C)] mirror in src/ebpf/flowtable.rs with a size assertion.
 */
#ifndef FOVEA_FLOWS_BPF_H
#define FOVEA_FLOWS_BPF_H

#include "fovea.bpf.h"

/* Bits of dp_settings.features that belong to flows. */
#define DP_FEATURE_FLOWS 0x1          /* count flows at all */
#define DP_FEATURE_TCP_FLAGS 0x2      /* per-flag TCP packet counts */
#define DP_FEATURE_HANDSHAKE 0x4      /* SYN -> SYN-ACK durations */
#define DP_FEATURE_COLLAPSE_PORTS 0x8 /* zero the client's ephemeral port */

#define DP_TCP_FIN 0x01
#define DP_TCP_SYN 0x02
#define DP_TCP_RST 0x04
#define DP_TCP_PSH 0x08
#define DP_TCP_ACK 0x10
#define DP_TCP_URG 0x20
#define DP_TCP_ECE 0x40
#define DP_TCP_CWR 0x80

/* Per-flag counters in flow_value.flags, in the order of `TcpFlag` in src/model/flows.rs. */
enum dp_flag {
	DP_FLAG_SYN = 0, /* SYN without ACK */
	DP_FLAG_SYNACK,  /* SYN and ACK in one segment (counted here only, not as SYN or ACK) */
	DP_FLAG_ACK,
	DP_FLAG_FIN,
	DP_FLAG_RST,
	DP_FLAG_PSH,
	DP_FLAG_URG,
	DP_FLAG_ECE,
	DP_FLAG_CWR,
	DP_FLAG_MAX,
};

/* Kinds of per-interface counters in `iface_counts`. */
#define DP_IFACE_OVERFLOW 1 /* IP packets whose flow did not fit in the table */
#define DP_IFACE_NOT_IP 2   /* frames without a readable IPv4/IPv6 header */

/* Upper bounds (ns, inclusive) of the handshake histogram buckets; one more bucket is +Inf. */
#define DP_HIST_BOUNDS 19

/*
 * A flow as one observation point sees it. Addresses in network byte order (IPv4 in the first 4
 * bytes, rest zero); ports in host byte order, 0 when the protocol has none, for IP fragments
 * after the first, and for a collapsed client port; ICMP/ICMPv6 carry type << 8 | code in dport
 * (IPFIX icmpTypeCode) and 0 in sport. 44 bytes.
 */
struct flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 ifindex;
	__u8 family; /* FOVEA_AF_INET or FOVEA_AF_INET6 */
	__u8 protocol;
	__u8 direction; /* FOVEA_DIR_INGRESS or FOVEA_DIR_EGRESS */
	__u8 pad;
};

/* What a flow did since the last drain. 88 bytes. */
struct flow_value {
	__u64 packets;
	__u64 bytes;    /* network-layer bytes (IP header included) */
	__u64 first_jiffies; /* jiffies of the first packet since the last drain */
	__u64 last_jiffies;  /* of the last one (written without ordering: the latest store wins).
			      * Jiffies, not ns: bpf_jiffies64() is inlined, a clock helper call
			      * costs ~15 ns; the coarse clock has the same tick resolution. User
			      * space converts (src/ebpf/tick.rs). */
	__u32 flags[DP_FLAG_MAX];
	__u32 handshakes; /* SYN-ACKs of this flow matched to their SYN */
	__u64 handshake_sum_ns;
	__u32 handshake_min_ns;
	__u32 handshake_max_ns;
};

struct iface_key {
	__u32 ifindex;
	__u8 direction;
	__u8 kind; /* DP_IFACE_* */
	__u16 pad;
};

/* The node-wide handshake histogram, per CPU, cumulative since load. */
struct dp_hist {
	__u64 count;
	__u64 sum_ns;
	__u64 buckets[DP_HIST_BOUNDS + 1];
};

/*
 * The aggregation map is a shared hash updated with atomic adds. The per-CPU variant (plain
 * adds, but nr_cpus values per flow) is built for the benchmark that compares them
 * (benches/flows_kernel.rs, docs/performance.md) with -DDP_FLOWS_PERCPU.
 */
#ifdef DP_FLOWS_PERCPU
#define DP_FLOW_MAP_TYPE BPF_MAP_TYPE_PERCPU_HASH
#define DP_ADD(p, v) (*(p) += (v))
#else
#define DP_FLOW_MAP_TYPE BPF_MAP_TYPE_HASH
#define DP_ADD(p, v) __sync_fetch_and_add((p), (v))
#endif

struct flow_table {
	__uint(type, DP_FLOW_MAP_TYPE);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
};

/* The two halves of the double buffer; user space sizes both to max_flows. */
struct flow_table flows_a SEC(".maps");
struct flow_table flows_b SEC(".maps");

/* Slot 0: the table programs count into now (set by user space before anything is attached). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct flow_table);
} flow_tables SEC(".maps");

/*
 * The per-CPU flow cache in front of the shared table: DP_CACHE_SLOTS direct-mapped entries per
 * CPU, each a flow key and its counts since the entry was filled. A packet whose flow is in its
 * slot is counted there with plain adds (no hashing of the key, no atomics, no shared cache
 * line); a packet of another flow is counted in the shared table, as without the cache, and its
 * flow takes the slot once the slot's flow has lost it (the score below), the old counts moving
 * into the table. A flood of one flow thus touches the table once per drain instead of once per
 * packet.
 *
 * Double-buffered like the tables: slot 0 of `flow_caches` is the active cache. User space swaps
 * the table first and the cache second, each swap waiting for an RCU grace period; a program
 * that runs between the two swaps moves an old-cache entry into the new table, where the next
 * drain finds it. After the second swap nobody holds the old cache or table: user space reads
 * both, merges equal keys and zeroes the old cache. Every packet is counted exactly once.
 *
 * Per-CPU state needs one program at a time per CPU: TC programs run with bottom halves
 * disabled (softirq, or dev_queue_xmit's rcu_read_lock_bh), so they do not nest on a CPU.
 * Packets that start a handshake measurement (SYN, SYN-ACK, with the handshake feature on) go
 * to the table directly: their duration belongs to the table's entry.
 */
#define DP_CACHE_SLOTS 256

/*
 * Who keeps a slot. A hit raises the slot's score (up to DP_CACHE_SCORE_MAX), a packet of another
 * flow lowers it and is counted in the table directly; only when the score falls below
 * -DP_CACHE_SCORE_KEEP does the new flow take the slot (the old one's counts moving to the
 * table). So a busy flow is not evicted by a packet of a passing one, two flows alternating in a
 * slot do not evict each other on every packet, and when more flows interleave than the caches
 * hold, about one miss in DP_CACHE_SCORE_KEEP + 1 pays for a move (most go straight to the
 * table, as without a cache).
 */
#define DP_CACHE_SCORE_MAX 8
#define DP_CACHE_SCORE_KEEP 8

/*
 * Benchmark variants (benches/flows_kernel.rs), never shipped: -DDP_NO_FLOW_CACHE counts every
 * packet in the table (the design before the cache); -DDP_CACHE_ALWAYS_MISS makes every packet
 * miss its slot (the steady state when more flows interleave than the caches hold).
 */
#ifdef DP_CACHE_ALWAYS_MISS
#define DP_CACHE_HIT(e, k) 0
#else
#define DP_CACHE_HIT(e, k) ((e)->v.packets && dp_key_eq(&(e)->key, (k)))
#endif

struct flow_cache_entry {
	struct flow_key key;
	__s32 score;         /* hits less misses since the flow took the slot (DP_CACHE_SCORE_*) */
	struct flow_value v; /* v.packets == 0: the slot is empty */
};

struct flow_cache {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DP_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct flow_cache_entry);
};

struct flow_cache flow_cache_a SEC(".maps");
struct flow_cache flow_cache_b SEC(".maps");

/* Slot 0: the cache programs count into now (set by user space before anything is attached). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct flow_cache);
} flow_caches SEC(".maps");

/* Cumulative per-interface counters: overflow and non-IP frames. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct iface_key);
	__type(value, struct fovea_count);
} iface_counts SEC(".maps");

/*
 * SYNs waiting for their SYN-ACK, keyed by the SYN's full flow key (ports never collapsed),
 * value: bpf_ktime_get_ns() of the first SYN. LRU: SYNs that are never answered (scans) age
 * out by themselves; only the latency sample is lost then, never a count.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, __u64);
} handshakes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dp_hist);
} handshake_hist SEC(".maps");

/* Explicit bucket bounds of network.tcp.handshake.duration, in ns (also in src/model/semconv.rs). */
static const __u64 dp_hist_bounds[DP_HIST_BOUNDS] = {
	10000ULL,      25000ULL,      50000ULL,      100000ULL,      250000ULL,
	500000ULL,     1000000ULL,    2500000ULL,    5000000ULL,     10000000ULL,
	25000000ULL,   50000000ULL,   100000000ULL,  250000000ULL,   500000000ULL,
	1000000000ULL, 2500000000ULL, 5000000000ULL, 10000000000ULL,
};

/* A SYN this old no longer starts a handshake (stale entry of an earlier connection). */
#define DP_SYN_MAX_AGE_NS (130ULL * 1000000000ULL)

/* A parsed packet: its flow key with the ports as on the wire, and what else we count. */
struct dp_pkt {
	struct flow_key key;
	__u32 bytes;
	__u16 l4_off; /* where the L4 header starts (0: not reached, e.g. a later fragment) */
	__u16 l3_end; /* where the IP packet ends (L2 padding excluded) */
	__u8 tcp_flags;
	__u8 pad[3];
};

static __always_inline void dp_iface_add(__u32 ifindex, __u8 direction, __u8 kind, __u64 packets,
					 __u64 bytes)
{
	struct iface_key k = {
		.ifindex = ifindex,
		.direction = direction,
		.kind = kind,
	};

	fovea_count_add_n(&iface_counts, &k, packets, bytes, &stats);
}

/* Zeroes the client's port: the one in the ephemeral range when the other is not in it. */
static __always_inline void dp_collapse_ports(struct flow_key *k, __u16 lo, __u16 hi)
{
	int s = k->sport >= lo && k->sport <= hi;
	int d = k->dport >= lo && k->dport <= hi;

	if (s && !d)
		k->sport = 0;
	else if (d && !s)
		k->dport = 0;
}

/* Adds v to *p: atomically when `shared` (a counter in the shared table), else plainly (this
 * CPU's cache, or a value not yet inserted). `shared` is a constant at every call site. */
#define DP_ADD_IF(shared, p, v) ((shared) ? DP_ADD((p), (v)) : (*(p) += (v)))

/* Per-flag counts of one segment's flags (`shared` as for DP_ADD_IF). */
static __always_inline void dp_flag_counts(__u32 *flags, __u8 tcp, int shared)
{
	if (tcp & DP_TCP_SYN) {
		if (tcp & DP_TCP_ACK)
			DP_ADD_IF(shared, &flags[DP_FLAG_SYNACK], 1);
		else
			DP_ADD_IF(shared, &flags[DP_FLAG_SYN], 1);
	} else if (tcp & DP_TCP_ACK) {
		DP_ADD_IF(shared, &flags[DP_FLAG_ACK], 1);
	}
	if (tcp & DP_TCP_FIN)
		DP_ADD_IF(shared, &flags[DP_FLAG_FIN], 1);
	if (tcp & DP_TCP_RST)
		DP_ADD_IF(shared, &flags[DP_FLAG_RST], 1);
	if (tcp & DP_TCP_PSH)
		DP_ADD_IF(shared, &flags[DP_FLAG_PSH], 1);
	if (tcp & DP_TCP_URG)
		DP_ADD_IF(shared, &flags[DP_FLAG_URG], 1);
	if (tcp & DP_TCP_ECE)
		DP_ADD_IF(shared, &flags[DP_FLAG_ECE], 1);
	if (tcp & DP_TCP_CWR)
		DP_ADD_IF(shared, &flags[DP_FLAG_CWR], 1);
}

static __always_inline void dp_hist_add(__u64 ns)
{
	__u32 zero = 0, i;
	struct dp_hist *h = bpf_map_lookup_elem(&handshake_hist, &zero);

	if (!h)
		return;
	h->count += 1; /* per-CPU: no atomics */
	h->sum_ns += ns;
	for (i = 0; i < DP_HIST_BOUNDS; i++) {
		if (ns <= dp_hist_bounds[i])
			break;
	}
	if (i <= DP_HIST_BOUNDS)
		h->buckets[i] += 1;
}

/*
 * SYN: remember when the first one of this connection was seen here. SYN-ACK: if the SYN of the
 * reverse direction was seen at this interface, the difference is the handshake as this
 * observation point saw it; it goes to the SYN-ACK's flow (`v`, NULL when that flow overflowed).
 * The node histogram counts a handshake only where the SYN-ACK arrives at ingress, i.e. where
 * the SYN left towards the server: the node's uplink for servers elsewhere, the server pod's
 * interface for local servers. Every connection crosses exactly one such point on a node, so
 * each handshake is counted once per node, NAT or not.
 */
static __always_inline void dp_handshake(struct dp_pkt *p, struct flow_value *v)
{
	__u8 syn_ack = p->tcp_flags & (DP_TCP_SYN | DP_TCP_ACK);
	struct flow_key r;
	__u64 now, *syn, d;
	__u32 d32;

	if (syn_ack == DP_TCP_SYN) {
		now = bpf_ktime_get_ns();
		syn = bpf_map_lookup_elem(&handshakes, &p->key);
		if (syn && now - *syn < DP_SYN_MAX_AGE_NS)
			return; /* a retransmitted SYN: the handshake started with the first one */
		bpf_map_update_elem(&handshakes, &p->key, &now, BPF_ANY);
		return;
	}
	if (syn_ack != (DP_TCP_SYN | DP_TCP_ACK))
		return;

	__builtin_memcpy(r.saddr, p->key.daddr, 16);
	__builtin_memcpy(r.daddr, p->key.saddr, 16);
	r.sport = p->key.dport;
	r.dport = p->key.sport;
	r.ifindex = p->key.ifindex;
	r.family = p->key.family;
	r.protocol = p->key.protocol;
	r.direction = FOVEA_DIR_INGRESS + FOVEA_DIR_EGRESS - p->key.direction;
	r.pad = 0;
	syn = bpf_map_lookup_elem(&handshakes, &r);
	if (!syn)
		return;
	now = bpf_ktime_get_ns();
	d = now - *syn;
	bpf_map_delete_elem(&handshakes, &r);
	if (d >= DP_SYN_MAX_AGE_NS)
		return;
	if (v) {
		d32 = (__u32)d; /* < 130 s fits in 32 bits of ns */
		DP_ADD(&v->handshakes, 1);
		DP_ADD(&v->handshake_sum_ns, d);
		/* min/max: plain stores; two SYN-ACKs of one collapsed flow at the same instant on two
		 * CPUs may lose one comparison (count and sum stay exact) */
		if (v->handshake_min_ns == 0 || d32 < v->handshake_min_ns)
			v->handshake_min_ns = d32;
		if (d32 > v->handshake_max_ns)
			v->handshake_max_ns = d32;
	}
	if (p->key.direction == FOVEA_DIR_INGRESS)
		dp_hist_add(d);
}

/* Adds one packet to a flow's counts (`shared` as for DP_ADD_IF). */
static __always_inline void dp_flow_add(struct flow_value *v, struct dp_pkt *p, __u64 now, __u32 features,
					int shared)
{
	DP_ADD_IF(shared, &v->packets, 1);
	DP_ADD_IF(shared, &v->bytes, p->bytes);
	v->last_jiffies = now;
	if (p->tcp_flags && (features & DP_FEATURE_TCP_FLAGS))
		dp_flag_counts(v->flags, p->tcp_flags, shared);
}

/* Fills a flow's counts (nobody else's yet) with its first packet. */
static __always_inline void dp_flow_init(struct flow_value *v, struct dp_pkt *p, __u64 now, __u32 features)
{
	__builtin_memset(v, 0, sizeof(*v));
	v->first_jiffies = now;
	dp_flow_add(v, p, now, features, 0);
}

/*
 * Counts one parsed IP packet in the active table. A new flow is inserted with its first packet
 * already counted (one update instead of insert-then-lookup); if another CPU inserted it first,
 * we add to theirs; if the table is full, the packet is counted as OVERFLOW for its interface.
 */
static __always_inline void dp_flow_count_table(void *table, struct dp_pkt *p, __u32 features,
						__u64 now, __u16 sport, __u16 dport)
{
	struct flow_value *v, nv;
	int overflowed = 0;

	v = bpf_map_lookup_elem(table, &p->key);
	if (v) {
		dp_flow_add(v, p, now, features, 1);
	} else {
		dp_flow_init(&nv, p, now, features);
		if (bpf_map_update_elem(table, &p->key, &nv, BPF_NOEXIST) != 0) {
			v = bpf_map_lookup_elem(table, &p->key);
			if (v) {
				dp_flow_add(v, p, now, features, 1); /* another CPU inserted it first */
			} else {
				dp_iface_add(p->key.ifindex, p->key.direction, DP_IFACE_OVERFLOW, 1, p->bytes);
				overflowed = 1;
			}
		}
	}

	if (p->key.protocol != FOVEA_IPPROTO_TCP || !(features & DP_FEATURE_HANDSHAKE) ||
	    !(p->tcp_flags & DP_TCP_SYN))
		return;
	/* a SYN-ACK's duration goes to its flow: find the entry we just inserted */
	if (!v && !overflowed && (p->tcp_flags & DP_TCP_ACK))
		v = bpf_map_lookup_elem(table, &p->key);
	/* the handshake table keys connections by their real ports */
	p->key.sport = sport;
	p->key.dport = dport;
	dp_handshake(p, v);
}

/* The cache slot of a key: its 32-bit words folded, then mixed (a few ns; not a strong hash). */
static __always_inline __u32 dp_cache_slot(const struct flow_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 h = 0;
	int i;

#pragma unroll
	for (i = 0; i < (int)(sizeof(*k) / 4); i++)
		h = ((h << 5) | (h >> 27)) ^ w[i];
	h ^= h >> 16;
	h *= 0x45d9f3b;
	h ^= h >> 16;
	return h & (DP_CACHE_SLOTS - 1);
}

static __always_inline int dp_key_eq(const struct flow_key *a, const struct flow_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	__u32 diff = 0;
	int i;

#pragma unroll
	for (i = 0; i < (int)(sizeof(*a) / 4); i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

/*
 * Moves a cache entry's counts into the table: added to the flow's entry, or inserted as it; a
 * full table makes them OVERFLOW of the entry's interface (never lost).
 */
static __always_inline void dp_cache_flush(void *table, struct flow_cache_entry *e)
{
	struct flow_value *v = bpf_map_lookup_elem(table, &e->key);
	int i;

	if (!v) {
		if (bpf_map_update_elem(table, &e->key, &e->v, BPF_NOEXIST) == 0)
			return;
		v = bpf_map_lookup_elem(table, &e->key); /* another CPU inserted it first */
		if (!v) {
			dp_iface_add(e->key.ifindex, e->key.direction, DP_IFACE_OVERFLOW, e->v.packets,
				     e->v.bytes);
			return;
		}
	}
	DP_ADD(&v->packets, e->v.packets);
	DP_ADD(&v->bytes, e->v.bytes);
	/* first and last seen: plain stores, as dp_flow_add's */
	if (e->v.first_jiffies < v->first_jiffies)
		v->first_jiffies = e->v.first_jiffies;
	if (e->v.last_jiffies > v->last_jiffies)
		v->last_jiffies = e->v.last_jiffies;
#pragma unroll
	for (i = 0; i < DP_FLAG_MAX; i++) {
		if (e->v.flags[i])
			DP_ADD(&v->flags[i], e->v.flags[i]);
	}
}

/*
 * Counts one packet in its cache slot; 0 when done, -1 when the packet must go to the table
 * itself (another flow keeps the slot, or no cache is set up).
 */
static __always_inline int dp_flow_count_cached(struct dp_pkt *p, __u32 features, __u64 now)
{
	struct flow_cache_entry *e;
	void *cache, *table;
	__u32 zero = 0, slot;

	cache = bpf_map_lookup_elem(&flow_caches, &zero);
	if (!cache)
		return -1;
	slot = dp_cache_slot(&p->key);
	e = bpf_map_lookup_elem(cache, &slot);
	if (!e)
		return -1;
	if (DP_CACHE_HIT(e, &p->key)) {
		dp_flow_add(&e->v, p, now, features, 0);
		if (e->score < DP_CACHE_SCORE_MAX)
			e->score += 1;
		return 0;
	}
	if (e->v.packets) {
		e->score -= 1;
		if (e->score >= -DP_CACHE_SCORE_KEEP)
			return -1; /* the slot's flow stays; this packet goes to the table */
		table = bpf_map_lookup_elem(&flow_tables, &zero);
		if (!table)
			return -1; /* cannot happen: both are set up before any program is attached */
		dp_cache_flush(table, e);
	}
	e->score = 0;
	e->key = p->key;
	dp_flow_init(&e->v, p, now, features);
	return 0;
}

/*
 * Counts one parsed IP packet: in this CPU's cache, or in the table (handshake packets, packets
 * of a flow that does not hold its slot).
 */
static __always_inline void dp_flow_count(struct dp_pkt *p, __u32 features, __u16 eph_lo, __u16 eph_hi)
{
	__u16 sport = p->key.sport, dport = p->key.dport;
	__u32 zero = 0;
	void *table;
	__u64 now;

	if (features & DP_FEATURE_COLLAPSE_PORTS)
		dp_collapse_ports(&p->key, eph_lo, eph_hi);
	now = bpf_jiffies64();
#ifndef DP_NO_FLOW_CACHE
	if (!(p->key.protocol == FOVEA_IPPROTO_TCP && (features & DP_FEATURE_HANDSHAKE) &&
	      (p->tcp_flags & DP_TCP_SYN)) &&
	    dp_flow_count_cached(p, features, now) == 0)
		return;
#endif
	table = bpf_map_lookup_elem(&flow_tables, &zero);
	if (!table)
		return; /* user space has not set up the tables yet */
	dp_flow_count_table(table, p, features, now, sport, dport);
}

#endif
