/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Kernel types that fovea's probes read, declared by hand for CO-RE.
 *
 * Why not a generated vmlinux.h: it is several megabytes, specific to one kernel build, and
 * hides which kernel fields we depend on. Every struct here carries preserve_access_index, so
 * clang records a BTF relocation for each field access and the loader (aya) rewrites offsets
 * against the running kernel's BTF (/sys/kernel/btf/vmlinux). Only the fields we read are
 * declared; their C types must match the kernel's in size (CO-RE relocates offsets, and reads
 * use our local size).
 */
#ifndef FOVEA_KERNEL_BPF_H
#define FOVEA_KERNEL_BPF_H

#include <linux/types.h>

/*
 * The values differ between kernels; only the names are stable. Declaring the enumerators
 * we need lets bpf_core_enum_value() ask the loader for the running kernel's values.
 */
enum skb_drop_reason {
	SKB_NOT_DROPPED_YET = 0,
	SKB_CONSUMED = 1,
	SKB_DROP_REASON_NOT_SPECIFIED = 2,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct net_device {
	int ifindex;
};

/* struct in6_addr without the uapi header (s6_addr is a macro there, not a field). */
struct fovea_in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
};

/*
 * The addresses and ports of a socket. The kernel keeps the IPv4 pairs in anonymous unions
 * (skc_addrpair, skc_portpair); CO-RE matches these names through anonymous members.
 */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct fovea_in6_addr skc_v6_daddr;
	struct fovea_in6_addr skc_v6_rcv_saddr;
};

struct sock {
	struct sock_common __sk_common;
};

/* A connection in SYN-RECV (its SYN-ACK sent), not yet a full socket. */
struct request_sock {
	struct sock_common __req_common;
};

/* TCP's smoothed RTT (<< 3) and mean deviation (<< 2), in microseconds. */
struct tcp_sock {
	__u32 srtt_us;
	__u32 mdev_us;
};

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	char cb[48];
	unsigned int len;
	int skb_iif;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u16 mac_header;
	unsigned char *head;
	unsigned char *data;
};

/* TCP's control block, kept in sk_buff::cb; we only need the segment count. */
struct tcp_skb_cb {
	__u32 seq;
	__u32 end_seq;
	__u16 tcp_gso_segs;
};

struct trace_entry {
	unsigned short type;
};

/* Plain tracepoint skb:kfree_skb; CO-RE relocates the field offsets (rx_sk moved them). */
struct trace_event_raw_kfree_skb {
	struct trace_entry ent;
	void *skbaddr;
	void *location;
	unsigned short protocol;
	enum skb_drop_reason reason;
};

struct trace_event_raw_tcp_retransmit_skb {
	struct trace_entry ent;
	const void *skbaddr;
	const void *skaddr;
	int state;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
	int err;
};

struct trace_event_raw_tcp_retransmit_synack {
	struct trace_entry ent;
	const void *skaddr;
	const void *req;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

#pragma clang attribute pop

#endif
