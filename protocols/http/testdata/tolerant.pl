#!/usr/bin/perl
# A tolerant HTTP/1.1 target: Perl's HTTP::Daemon (Debian libhttp-daemon-perl)
# stands in for the embedded web servers of PBXs and devices, which read
# requests far more loosely than gatehouse ("Transfer-Encoding : chunked",
# obs-fold, repeated lengths). Every request it reads is logged on stdout as
#   REQ <conn> <method> <uri> host=<host> len=<body length>
# and answered "tolerant <method> <uri>", keeping the connection alive.
# Usage: tolerant.pl PORT
use strict;
use warnings;
use HTTP::Daemon;
use HTTP::Response;
$| = 1;
$SIG{CHLD} = 'IGNORE';
my $d = HTTP::Daemon->new(LocalAddr => '127.0.0.1', LocalPort => $ARGV[0], ReuseAddr => 1, Listen => 64)
	or die "listen: $!";
print "READY\n";
my $n = 0;
while (my $c = $d->accept) {
	$n++;
	my $pid = fork();
	if (!defined $pid) { die "fork: $!" }
	if ($pid) { $c->close; next }
	while (my $r = $c->get_request) {
		my $host = $r->header('Host') // '';
		printf "REQ %d %s %s host=%s len=%d\n", $n, $r->method, $r->uri, $host, length($r->content);
		my $body = sprintf "tolerant %s %s", $r->method, $r->uri;
		my $resp = HTTP::Response->new(200, 'OK', ['Content-Type' => 'text/plain', 'Content-Length' => length($body)], $body);
		$c->send_response($resp);
	}
	exit 0;
}
