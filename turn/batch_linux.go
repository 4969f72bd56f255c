//go:build linux

package turn

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Datagrams move through recvmmsg and sendmmsg here, up to batchSize per
// system call: a reader woken for one datagram takes every one queued on
// its socket, and the datagrams pion writes while it handles them leave
// in one call per socket when the batch is done (flushed before the next
// receive, so never later than the reader's next wait).
//
// golang.org/x/net's ReadBatch would allocate a net.Addr per datagram;
// these parse the source into a netip.AddrPort in place.
//
// Both calls are raw system calls (no entersyscall): on a non-blocking
// socket they never wait (EAGAIN parks the goroutine on the netpoller
// instead), but a sendmmsg of a batch on loopback runs the receivers'
// softirq inline and outlasts sysmon's 20 us tick, which then hands the P
// to another thread and back, a thread switch per batch.

const (
	batchSize = 32
	// slotSize holds any datagram pion takes whole (its buffers are 1600
	// bytes); a longer one is flagged MSG_TRUNC and dropped as oversized.
	slotSize = 2048
)

// mmsghdr is struct mmsghdr (x/sys/unix has no type for it).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// batch is the memory of one recvmmsg or sendmmsg. Sockets take one from
// batches only while datagrams are in it: an idle relay holds none.
type batch struct {
	msgs  [batchSize]mmsghdr
	iovs  [batchSize]unix.Iovec
	names [batchSize]unix.RawSockaddrInet6
	data  [batchSize * slotSize]byte
	n     int // datagrams in it
	next  int // the next one to hand out (reader)

	// Sending: the messages sendmmsg gets (group), from datagram first[k],
	// count[k] of them, a run with its UDP_SEGMENT in cmsgs[k].
	out           [batchSize]mmsghdr
	cmsgs         [batchSize][4]uint64
	first, count  [batchSize]int
	nout, nextOut int
}

var batches = sync.Pool{New: func() any {
	b := new(batch)
	for i := range b.msgs {
		b.iovs[i].Base = &b.data[i*slotSize]
		b.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}}

func getBatch() *batch { return batches.Get().(*batch) }

func putBatch(b *batch) {
	b.n, b.next, b.nout, b.nextOut = 0, 0, 0, 0
	batches.Put(b)
}

// batchReader reads one UDP socket with recvmmsg. One goroutine (the
// socket's reader) uses it.
type batchReader struct {
	raw  syscall.RawConn
	b    *batch // nil while none is held
	err  error  // of the last recvmmsg
	recv func(fd uintptr) bool
	// flush runs before every receive: what was written while the
	// previous batch was handled leaves now.
	flush func()
}

// rawUDP is pc's socket, or nil when pc is not a UDP socket.
func rawUDP(pc net.PacketConn) syscall.RawConn {
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return nil
	}
	raw, err := u.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// newBatchReader returns nil when pc is not a UDP socket.
func newBatchReader(pc net.PacketConn, flush func()) *batchReader {
	raw := rawUDP(pc)
	if raw == nil {
		return nil
	}
	r := &batchReader{raw: raw, flush: flush}
	r.recv = r.recvmmsg
	return r
}

func (r *batchReader) recvmmsg(fd uintptr) bool {
	if r.b == nil {
		r.b = getBatch()
	}
	b := r.b
	for i := range b.msgs {
		b.iovs[i].SetLen(slotSize)
		b.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.msgs[i].hdr.Flags = 0
		b.msgs[i].len = 0
	}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])), batchSize, 0, 0, 0)
		switch errno {
		case 0:
			b.n, b.next, r.err = int(n), 0, nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// Wait for the socket without holding the memory.
			putBatch(b)
			r.b = nil
			return false
		default:
			r.err = errno
			return true
		}
	}
}

// next copies the next datagram into p. trunc reports one longer than p
// or than a slot, of which n bytes were copied.
func (r *batchReader) next(p []byte) (n int, from netip.AddrPort, trunc bool, err error) {
	for r.b == nil || r.b.next >= r.b.n {
		if r.b != nil {
			putBatch(r.b)
			r.b = nil
		}
		if r.flush != nil {
			r.flush()
		}
		if err := r.raw.Read(r.recv); err != nil {
			return 0, netip.AddrPort{}, false, err
		}
		if r.err != nil {
			if r.b != nil {
				putBatch(r.b)
				r.b = nil
			}
			return 0, netip.AddrPort{}, false, &net.OpError{Op: "recvmmsg", Net: "udp", Err: r.err}
		}
	}
	b := r.b
	i := b.next
	b.next++
	m := &b.msgs[i]
	size := int(m.len)
	n = copy(p, b.data[i*slotSize:i*slotSize+min(size, slotSize)])
	trunc = m.hdr.Flags&unix.MSG_TRUNC != 0 || size > len(p)
	return n, sockaddrToAddrPort(&b.names[i]), trunc, nil
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// outbox holds datagrams written to one UDP socket until flush sends them
// with sendmmsg, in the order written. Several goroutines may write and
// flush; each that writes flushes before it waits for more input.
type outbox struct {
	mu     sync.Mutex
	raw    syscall.RawConn
	family int    // of the socket: how destinations are encoded
	b      *batch // nil while empty
	cur    *batch // being sent
	err    error  // of the last sendmmsg
	send   func(fd uintptr) bool
	gso    bool   // runs to one destination go as one (UDP_SEGMENT)
	sent   uint64 // messages sendmmsg took, for tests
	// failed is told of each datagram the kernel refused: it was
	// counted as sent when written.
	failed func(size int)
}

// newOutbox returns nil when pc is not a UDP socket.
func newOutbox(pc net.PacketConn, failed func(int)) *outbox {
	raw := rawUDP(pc)
	if raw == nil {
		return nil
	}
	o := &outbox{raw: raw, failed: failed}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		o.family, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		// Linux 4.18 and later segment UDP; older ones have no such option.
		_, gerr := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		o.gso = gerr == nil
	}); err != nil || serr != nil {
		return nil
	}
	o.send = o.sendmmsg
	return o
}

// add queues p for to, sending the batch when p fills it. It returns
// false, having queued nothing, when p or to does not fit a batch; the
// caller flushes and writes it itself.
func (o *outbox) add(p []byte, to netip.AddrPort) bool {
	if len(p) > slotSize || to.Addr().Zone() != "" {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.b == nil {
		o.b = getBatch()
	}
	b := o.b
	i := b.n
	if !encodeSockaddr(&b.names[i], &b.msgs[i].hdr, o.family, to) {
		if b.n == 0 {
			putBatch(b)
			o.b = nil
		}
		return false
	}
	copy(b.data[i*slotSize:], p)
	b.iovs[i].SetLen(len(p))
	b.n++
	if b.n == batchSize {
		// Under the lock: no other writer may find the batch full.
		o.flushLocked()
	}
	return true
}

// flush sends what is queued. Datagrams the kernel refuses are dropped
// (and reported to failed), as a failed sendto would drop them; the error
// returned is the first such, or the socket's.
func (o *outbox) flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.flushLocked()
}

func (o *outbox) flushLocked() error {
	b := o.b
	if b == nil {
		return nil
	}
	o.b, o.cur = nil, b
	defer func() {
		o.cur = nil
		putBatch(b)
	}()
	b.group(0, o.gso)
	var first error
	for b.nextOut < b.nout {
		o.err = nil
		if err := o.raw.Write(o.send); err != nil {
			for k := b.nextOut; k < b.nout; k++ {
				b.failed(k, o.failed)
			}
			return err
		}
		if o.err == nil {
			continue
		}
		k := b.nextOut
		if b.count[k] > 1 {
			// Not sent as one (longer than the path's MTU, or a device
			// that cannot segment): the rest one datagram each.
			if o.err == unix.EIO {
				o.gso = false
			}
			b.group(b.first[k], false)
			continue
		}
		b.failed(k, o.failed)
		b.nextOut++
		if first == nil {
			first = &net.OpError{Op: "sendmmsg", Net: "udp", Err: o.err}
		}
	}
	return first
}

func (o *outbox) sendmmsg(fd uintptr) bool {
	b := o.cur
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.nextOut])), uintptr(b.nout-b.nextOut), 0, 0, 0)
		switch errno {
		case 0:
			o.sent += uint64(n)
			b.nextOut += int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			o.err = errno
			return true
		}
	}
}

// gsoMaxSegment is the longest datagram sent in a run (UDP GSO): the
// kernel refuses a segment longer than the path's MTU allows, and no path
// is below IPv6's minimum (1280 bytes less 48 of headers). Media is shorter.
const gsoMaxSegment = 1232

// group makes the messages for sendmmsg from datagram from on: one per
// datagram, or with gso one per run of datagrams to one destination, all
// of one size but the last, which may be shorter (UDP_SEGMENT: the kernel
// cuts the run at that size, the receiver gets the same datagrams).
func (b *batch) group(from int, gso bool) {
	b.nout, b.nextOut = 0, 0
	for i := from; i < b.n; {
		size := b.iovs[i].Len
		j := i + 1
		if gso && size <= gsoMaxSegment {
			for j < b.n && b.sameDest(i, j) && b.iovs[j].Len <= size {
				j++
				if b.iovs[j-1].Len < size {
					break // a shorter one ends a run
				}
			}
		}
		k := b.nout
		m := &b.out[k]
		m.hdr = b.msgs[i].hdr // one iovec at i, no control
		m.len = 0
		if j-i > 1 {
			m.hdr.SetIovlen(j - i)
			c := (*unix.Cmsghdr)(unsafe.Pointer(&b.cmsgs[k][0]))
			c.Level, c.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			c.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Add(unsafe.Pointer(c), unix.CmsgLen(0))) = uint16(size)
			m.hdr.Control = (*byte)(unsafe.Pointer(c))
			m.hdr.SetControllen(unix.CmsgSpace(2))
		}
		b.first[k], b.count[k] = i, j-i
		b.nout++
		i = j
	}
}

func (b *batch) sameDest(i, j int) bool {
	n := b.msgs[i].hdr.Namelen
	return n == b.msgs[j].hdr.Namelen &&
		string((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&b.names[i]))[:n]) ==
			string((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&b.names[j]))[:n])
}

// failed reports message k's datagrams.
func (b *batch) failed(k int, report func(int)) {
	for i := b.first[k]; i < b.first[k]+b.count[k]; i++ {
		report(int(b.iovs[i].Len))
	}
}

// encodeSockaddr writes to into sa for a socket of family and points the
// header at it.
func encodeSockaddr(sa *unix.RawSockaddrInet6, h *unix.Msghdr, family int, to netip.AddrPort) bool {
	a := to.Addr()
	switch {
	case family == unix.AF_INET && a.Unmap().Is4():
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
		sa4.Port = ntohs(to.Port())
		h.Namelen = unix.SizeofSockaddrInet4
	case family == unix.AF_INET6 && a.IsValid():
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()} // v4 as v4-mapped
		sa.Port = ntohs(to.Port())
		h.Namelen = unix.SizeofSockaddrInet6
	default:
		return false
	}
	return true
}
