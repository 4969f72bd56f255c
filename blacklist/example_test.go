package blacklist_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/gatehouse-pbx/gatehouse/blacklist"
	"github.com/gatehouse-pbx/gatehouse/configs"
)

func Example() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l, err := blacklist.New(configs.Blacklist{Threshold: 2, Expiration: 10 * time.Minute}, blacklist.Options{
		Clock:  func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer l.Close()

	phone := netip.MustParseAddr("203.0.113.9")
	for range 3 { // one more than the threshold within a minute
		l.Report(blacklist.Event{Client: phone, Type: "sip", Service: "example.com", Reason: "unknown service"})
	}
	fmt.Println("blocked:", l.Blocked(phone))
	for _, e := range l.Entries(blacklist.Filter{Blocked: true}) {
		fmt.Println(e.Prefix, e.Total, e.Reasons[len(e.Reasons)-1], "until", e.Expires.Format(time.TimeOnly))
	}

	now = now.Add(10 * time.Minute)
	fmt.Println("blocked after expiration:", l.Blocked(phone))

	// Administrators block networks by hand and whitelist what must never be blocked.
	if err := l.AddManual(netip.MustParsePrefix("198.51.100.0/24"), "scanner"); err != nil {
		panic(err)
	}
	fmt.Println("manual:", l.Blocked(netip.MustParseAddr("198.51.100.20")))
	if err := l.AddWhitelist(netip.MustParsePrefix("198.51.100.20/32"), "our monitoring"); err != nil {
		panic(err)
	}
	fmt.Println("whitelisted:", l.Blocked(netip.MustParseAddr("198.51.100.20")))
	err = l.Remove(netip.MustParseAddr("198.51.100.21"))
	fmt.Println(errors.Is(err, blacklist.ErrCovered), err)
	// Output:
	// blocked: true
	// 203.0.113.9/32 3 sip example.com: unknown service until 12:10:00
	// blocked after expiration: false
	// manual: true
	// whitelisted: false
	// true blacklist: still blocked by a wider manual entry: 198.51.100.21 is inside 198.51.100.0/24
}
