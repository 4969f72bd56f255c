package h323

import (
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gatehouse-pbx/gatehouse/protocols/h323/per"
)

// This file walks the parts of H.225.0 (H323-MESSAGES.asn, 12/2009) that
// routing needs, on top of package per. Each skipX function steps over a
// value of type X component by component, as its ASN.1 definition lists
// them; extension additions are skipped whole as the open types they are,
// so that versions newer than the one written against still parse. The
// walker stops as soon as it holds what it came for: it validates the
// route, not the whole message.

// Limits on what one message may make the walker do or keep.
const (
	// maxDepth bounds the nesting of GenericData in GenericData, the only
	// recursive type walked.
	maxDepth = 8
	// maxAliases bounds the aliases kept from one list; more are walked
	// but not kept.
	maxAliases = 8
	// maxRAS bounds the RAS messages one Facility may tunnel. Endpoints
	// send one or two; more than gatehouse checks are refused.
	maxRAS = 16
)

// aliasKind is the AliasAddress alternative of an alias.
type aliasKind int

const (
	aliasOther  aliasKind = iota // transportID, partyNumber, ...: not read
	aliasDigits                  // dialledDigits: an E.164 number
	aliasH323ID
	aliasURL
	aliasEmail
)

// alias is an AliasAddress gatehouse can read: raw holds UTF-16BE for an
// h323-ID and IA5 octets for a url-ID, email-ID or dialledDigits.
type alias struct {
	kind aliasKind
	raw  []byte
}

func (a alias) text() bool { return a.kind != aliasOther }

// String returns the alias as UTF-8, "" when it is not text.
func (a alias) String() string {
	switch a.kind {
	case aliasH323ID:
		return bmpString(a.raw)
	case aliasURL, aliasEmail, aliasDigits:
		return string(a.raw)
	}
	return ""
}

// equalFold reports whether the alias is s, ignoring case; an h323-ID is
// compared without decoding it.
func (a alias) equalFold(s string) bool {
	switch a.kind {
	case aliasURL, aliasEmail, aliasDigits:
		return strings.EqualFold(string(a.raw), s)
	case aliasH323ID:
		raw := a.raw
		for _, c := range s {
			if len(raw) < 2 {
				return false
			}
			if !runeEqualFold(rune(raw[0])<<8|rune(raw[1]), c) {
				return false
			}
			raw = raw[2:]
		}
		return len(raw) == 0
	}
	return false
}

// runeEqualFold is strings.EqualFold for one character: simple Unicode
// case folding.
func runeEqualFold(a, b rune) bool {
	if a == b {
		return true
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}

// bmpString decodes UTF-16BE (a BMPString is UCS-2; surrogates are
// tolerated in pairs and replaced when alone) into UTF-8.
func bmpString(raw []byte) string {
	var b strings.Builder
	b.Grow(len(raw) / 2)
	for i := 0; i+1 < len(raw); i += 2 {
		c := rune(raw[i])<<8 | rune(raw[i+1])
		if utf16.IsSurrogate(c) && i+3 < len(raw) {
			if d := utf16.DecodeRune(c, rune(raw[i+2])<<8|rune(raw[i+3])); d != utf8.RuneError {
				c = d
				i += 2
			}
		}
		b.WriteRune(c)
	}
	return b.String()
}

// endSequence skips the extension additions of a SEQUENCE whose extension
// bit was ext.
func endSequence(r *per.Reader, ext bool) {
	if ext {
		r.SkipExtensions(r.Extensions())
	}
}

// skipNullChoice skips an extensible CHOICE of NULLs (reasons, goals).
func skipNullChoice(r *per.Reader, root int) {
	if _, ext := r.Choice(root, true); ext {
		r.OpenType()
	}
}

// skipNonStandardParameter: SEQUENCE {nonStandardIdentifier CHOICE {object
// OBJECT IDENTIFIER, h221NonStandard H221NonStandard, ...}, data OCTET STRING}.
func skipNonStandardParameter(r *per.Reader) {
	switch i, ext := r.Choice(2, true); {
	case ext:
		r.OpenType()
	case i == 0:
		r.ObjectIdentifier()
	default:
		skipH221NonStandard(r)
	}
	r.OctetString(0, per.Unbounded)
}

// skipH221NonStandard: SEQUENCE {t35CountryCode INTEGER(0..255),
// t35Extension INTEGER(0..255), manufacturerCode INTEGER(0..65535), ...}.
func skipH221NonStandard(r *per.Reader) {
	_, ext := r.Sequence(0, true)
	r.Constrained(0, 255)
	r.Constrained(0, 255)
	r.Constrained(0, 65535)
	endSequence(r, ext)
}

// skipNonStandardOnly skips the many types that are SEQUENCE
// {nonStandardData NonStandardParameter OPTIONAL, ...}: GatekeeperInfo,
// TerminalInfo, McuInfo and the H310Caps..T120OnlyCaps of a gateway.
func skipNonStandardOnly(r *per.Reader) {
	opt, ext := r.Sequence(1, true)
	if opt.Has(0) {
		skipNonStandardParameter(r)
	}
	endSequence(r, ext)
}

// skipTransportAddress: CHOICE {ipAddress, ipSourceRoute, ipxAddress,
// ip6Address, netBios, nsap, nonStandardAddress, ...}.
func skipTransportAddress(r *per.Reader) {
	i, ext := r.Choice(7, true)
	if ext {
		r.OpenType()
		return
	}
	switch i {
	case 0: // ipAddress SEQUENCE {ip OCTET STRING(SIZE(4)), port INTEGER(0..65535)}
		r.OctetString(4, 4)
		r.Constrained(0, 65535)
	case 1: // ipSourceRoute SEQUENCE {ip, port, route SEQUENCE OF OCTET STRING(SIZE(4)), routing CHOICE {strict, loose, ...}, ...}
		_, ext := r.Sequence(0, true)
		r.OctetString(4, 4)
		r.Constrained(0, 65535)
		for n := r.Length(0, per.Unbounded); n > 0 && r.Err() == nil; n-- {
			r.OctetString(4, 4)
		}
		skipNullChoice(r, 2)
		endSequence(r, ext)
	case 2: // ipxAddress SEQUENCE {node OCTET STRING(SIZE(6)), netnum (SIZE(4)), port (SIZE(2))}
		r.OctetString(6, 6)
		r.OctetString(4, 4)
		r.OctetString(2, 2)
	case 3: // ip6Address SEQUENCE {ip OCTET STRING(SIZE(16)), port INTEGER(0..65535), ...}
		_, ext := r.Sequence(0, true)
		r.OctetString(16, 16)
		r.Constrained(0, 65535)
		endSequence(r, ext)
	case 4: // netBios OCTET STRING(SIZE(16))
		r.OctetString(16, 16)
	case 5: // nsap OCTET STRING(SIZE(1..20))
		r.OctetString(1, 20)
	case 6:
		skipNonStandardParameter(r)
	}
}

// skipTransportAddresses: SEQUENCE OF TransportAddress.
func skipTransportAddresses(r *per.Reader) {
	for n := r.Length(0, per.Unbounded); n > 0 && r.Err() == nil; n-- {
		skipTransportAddress(r)
	}
}

// readAlias reads an AliasAddress: CHOICE {dialledDigits IA5String(SIZE(1..128))
// (FROM("0123456789#*,")), h323-ID BMPString(SIZE(1..256)), ..., url-ID
// IA5String(SIZE(1..512)), transportID, email-ID IA5String(SIZE(1..512)),
// partyNumber, mobileUIM, isupNumber}.
func readAlias(r *per.Reader) alias {
	i, ext := r.Choice(2, true)
	switch {
	case !ext && i == 0:
		// 13 permitted characters, sent as their index: 4 bits each when aligned.
		return alias{kind: aliasDigits, raw: r.AlphabetString(1, 128, 4, "#*,0123456789")}
	case !ext:
		return alias{kind: aliasH323ID, raw: r.BMPString(1, 256)}
	}
	ot := r.OpenType()
	var kind aliasKind
	switch i {
	case 0:
		kind = aliasURL
	case 2:
		kind = aliasEmail
	default:
		return alias{}
	}
	inner := per.NewReader(ot)
	a := alias{kind: kind, raw: inner.IA5String(1, 512)}
	inner.End()
	if err := inner.Err(); err != nil {
		r.Fail(err)
		return alias{}
	}
	return a
}

// readAliases reads a SEQUENCE OF AliasAddress. It keeps the first
// maxAliases aliases that are text, and counts them all.
func readAliases(r *per.Reader) (text []alias, count int) {
	count = r.Length(0, per.Unbounded)
	for n := count; n > 0 && r.Err() == nil; n-- {
		if a := readAlias(r); a.text() && len(text) < maxAliases {
			text = append(text, a)
		}
	}
	return text, count
}

// skipEndpointType: SEQUENCE {nonStandardData OPTIONAL, vendor VendorIdentifier
// OPTIONAL, gatekeeper GatekeeperInfo OPTIONAL, gateway GatewayInfo OPTIONAL,
// mcu McuInfo OPTIONAL, terminal TerminalInfo OPTIONAL, mc BOOLEAN,
// undefinedNode BOOLEAN, ...}.
func skipEndpointType(r *per.Reader) {
	opt, ext := r.Sequence(6, true)
	if opt.Has(0) {
		skipNonStandardParameter(r)
	}
	if opt.Has(1) {
		skipVendorIdentifier(r)
	}
	if opt.Has(2) {
		skipNonStandardOnly(r) // GatekeeperInfo
	}
	if opt.Has(3) {
		skipGatewayInfo(r)
	}
	if opt.Has(4) {
		skipNonStandardOnly(r) // McuInfo: its protocol list is an extension addition
	}
	if opt.Has(5) {
		skipNonStandardOnly(r) // TerminalInfo
	}
	r.Bool()
	r.Bool()
	endSequence(r, ext)
}

// skipVendorIdentifier: SEQUENCE {vendor H221NonStandard, productId OCTET
// STRING(SIZE(1..256)) OPTIONAL, versionId OCTET STRING(SIZE(1..256)) OPTIONAL, ...}.
func skipVendorIdentifier(r *per.Reader) {
	opt, ext := r.Sequence(2, true)
	skipH221NonStandard(r)
	if opt.Has(0) {
		r.OctetString(1, 256)
	}
	if opt.Has(1) {
		r.OctetString(1, 256)
	}
	endSequence(r, ext)
}

// skipGatewayInfo: SEQUENCE {protocol SEQUENCE OF SupportedProtocols
// OPTIONAL, nonStandardData OPTIONAL, ...}, where SupportedProtocols is
// CHOICE {nonStandardData, h310, h320, h321, h322, h323, h324, voice,
// t120-only, ...} and each XxxCaps has the nonStandardData-only shape.
func skipGatewayInfo(r *per.Reader) {
	opt, ext := r.Sequence(2, true)
	if opt.Has(0) {
		for n := r.Length(0, per.Unbounded); n > 0 && r.Err() == nil; n-- {
			switch i, pext := r.Choice(9, true); {
			case pext:
				r.OpenType()
			case i == 0:
				skipNonStandardParameter(r)
			default:
				skipNonStandardOnly(r)
			}
		}
	}
	if opt.Has(1) {
		skipNonStandardParameter(r)
	}
	endSequence(r, ext)
}

// skipQseriesOptions: SEQUENCE {q932Full..q957Full BOOLEAN (7), q954Info
// SEQUENCE {conferenceCalling BOOLEAN, threePartyService BOOLEAN, ...}, ...}.
func skipQseriesOptions(r *per.Reader) {
	_, ext := r.Sequence(0, true)
	r.Bits(7)
	_, qext := r.Sequence(0, true)
	r.Bits(2)
	endSequence(r, qext)
	endSequence(r, ext)
}

// genericID reads a GenericIdentifier: CHOICE {standard INTEGER(0..16383,
// ...), oid OBJECT IDENTIFIER, nonStandard GloballyUniqueID, ...}. It
// returns the number of a standard identifier, -1 for any other.
func genericID(r *per.Reader) int64 {
	i, ext := r.Choice(3, true)
	switch {
	case ext:
		r.OpenType()
	case i == 0:
		return r.Int(0, 16383, true)
	case i == 1:
		r.ObjectIdentifier()
	default:
		r.OctetString(16, 16)
	}
	return -1
}

// Standard GenericData identifiers gatehouse looks for (H.460.17).
const (
	featureRASTunnel = 17 // "RAS over H.225.0"
	paramRASMessage  = 1  // its parameter holding one raw RasMessage
)

// genericDataWalker walks a SEQUENCE OF GenericData and collects the raw
// RasMessages of H.460.17 features at its top level.
type genericDataWalker struct {
	r   *per.Reader
	ras [][]byte
}

// open reads the start GenericData and EnumeratedParameter share: a
// SEQUENCE with one optional field and an extension marker, then the id.
// Nested deeper than maxDepth, it fails the reader instead and ok is false.
func (w *genericDataWalker) open(depth int) (opt per.Bitmap, ext bool, id int64, ok bool) {
	if depth > maxDepth {
		w.r.Fail(errTooDeep)
		return opt, false, 0, false
	}
	opt, ext = w.r.Sequence(1, true)
	return opt, ext, genericID(w.r), true
}

// genericData: SEQUENCE {id GenericIdentifier, parameters SEQUENCE
// (SIZE(1..512)) OF EnumeratedParameter OPTIONAL, ...}.
func (w *genericDataWalker) genericData(depth int) {
	r := w.r
	opt, ext, id, ok := w.open(depth)
	if !ok {
		return
	}
	tunnel := depth == 0 && id == featureRASTunnel
	if opt.Has(0) {
		for n := r.Length(1, 512); n > 0 && r.Err() == nil; n-- {
			w.parameter(depth, tunnel)
		}
	}
	endSequence(r, ext)
}

// parameter: EnumeratedParameter ::= SEQUENCE {id GenericIdentifier,
// content Content OPTIONAL, ...}; Content ::= CHOICE {raw OCTET STRING,
// text IA5String, unicode BMPString, bool BOOLEAN, number8 INTEGER(0..255),
// number16 INTEGER(0..65535), number32 INTEGER(0..4294967295), id
// GenericIdentifier, alias AliasAddress, transport TransportAddress,
// compound SEQUENCE (SIZE(1..512)) OF EnumeratedParameter, nested SEQUENCE
// (SIZE(1..16)) OF GenericData, ...}.
func (w *genericDataWalker) parameter(depth int, tunnel bool) {
	r := w.r
	opt, ext, id, ok := w.open(depth)
	if !ok {
		return
	}
	rasParam := tunnel && id == paramRASMessage
	if opt.Has(0) {
		i, cext := r.Choice(12, true)
		if cext {
			r.OpenType()
			i = -1
		}
		switch i {
		case 0:
			raw := r.OctetString(0, per.Unbounded)
			if rasParam && r.Err() == nil {
				if len(w.ras) == maxRAS {
					r.Fail(errTooManyRAS)
					return
				}
				w.ras = append(w.ras, raw)
			}
		case 1:
			r.IA5String(0, per.Unbounded)
		case 2:
			r.BMPString(0, per.Unbounded)
		case 3:
			r.Bool()
		case 4:
			r.Constrained(0, 255)
		case 5:
			r.Constrained(0, 65535)
		case 6:
			r.Constrained(0, 4294967295)
		case 7:
			genericID(r)
		case 8:
			readAlias(r)
		case 9:
			skipTransportAddress(r)
		case 10:
			for n := r.Length(1, 512); n > 0 && r.Err() == nil; n-- {
				w.parameter(depth+1, false)
			}
		case 11:
			for n := r.Length(1, 16); n > 0 && r.Err() == nil; n-- {
				w.genericData(depth + 1)
			}
		}
	}
	endSequence(r, ext)
}

// bodyKind is the h323-message-body alternative of a signalling message.
type bodyKind int

const (
	bodyOther bodyKind = iota // the other root bodies, and the extension ones (empty, ...)
	bodySetup
	bodyFacility
)

// userInfo is what routing needs of an H323-UserInformation.
type userInfo struct {
	body bodyKind
	// dest holds the text aliases of a Setup's destinationAddress.
	dest []alias
	// ras holds the RasMessages a Facility tunnels (H.460.17), in order.
	ras [][]byte
}

// decodeUserInfo walks the H323-UserInformation uu of a Q.931 message of
// type msgType: for a Setup up to its destinationAddress, for a Facility
// through its body to the genericData of its H323-UU-PDU.
//
//	H323-UserInformation ::= SEQUENCE {h323-uu-pdu H323-UU-PDU, user-data SEQUENCE {...} OPTIONAL, ...}
//	H323-UU-PDU ::= SEQUENCE {h323-message-body CHOICE {setup, callProceeding,
//	    connect, alerting, information, releaseComplete, facility, ..., progress,
//	    empty, status, ...}, nonStandardData OPTIONAL, ..., h4501SupplementaryService,
//	    h245Tunnelling, h245Control, nonStandardControl, callLinkage,
//	    tunnelledSignallingMessage, provisionalRespToH245Tunnelling,
//	    stimulusControl, genericData SEQUENCE OF GenericData OPTIONAL}
func decodeUserInfo(uu []byte, msgType byte) (userInfo, error) {
	var info userInfo
	r := per.NewReader(uu)
	r.Sequence(1, true)                   // H323-UserInformation; user-data follows the PDU, unread
	pduOpt, pduExt := r.Sequence(1, true) // H323-UU-PDU
	i, ext := r.Choice(7, true)
	switch {
	case !ext && i == 0:
		info.body = bodySetup
	case !ext && i == 6:
		info.body = bodyFacility
	}
	if r.Err() == nil && !bodyFits(info.body, ext, msgType) {
		return info, errBodyMessage
	}
	switch {
	case info.body == bodySetup:
		info.dest = setupDestination(r)
		return info, r.Err()
	case info.body == bodyFacility:
		skipFacilityUUIE(r)
	case ext:
		r.OpenType()
	default:
		return info, r.Err() // a root body no message routed on carries
	}
	if pduOpt.Has(0) {
		skipNonStandardParameter(r)
	}
	if pduExt {
		adds := r.Extensions()
		for j := 0; j < adds.Len() && r.Err() == nil; j++ {
			if !adds.Has(j) {
				continue
			}
			ot := r.OpenType()
			if j != 8 { // genericData
				continue
			}
			w := genericDataWalker{r: per.NewReader(ot)}
			for n := w.r.Length(0, per.Unbounded); n > 0 && w.r.Err() == nil; n-- {
				w.genericData(0)
			}
			w.r.End()
			if err := w.r.Err(); err != nil {
				return info, err
			}
			info.ras = w.ras
		}
	}
	return info, r.Err()
}

// bodyFits reports whether a message body may travel in a Q.931 message of
// type msgType. A Facility carries the facility body, or empty (an
// extension body); any extension body is accepted there, as its open type
// can be stepped over. The other root bodies are not walked, so they are
// not allowed where RAS could be tunnelled.
func bodyFits(body bodyKind, ext bool, msgType byte) bool {
	switch msgType {
	case q931Setup:
		return body == bodySetup
	case q931Facility:
		return body == bodyFacility || ext
	}
	return true
}

// setupDestination walks a Setup-UUIE up to its destinationAddress:
// SEQUENCE {protocolIdentifier, h245Address TransportAddress OPTIONAL,
// sourceAddress SEQUENCE OF AliasAddress OPTIONAL, sourceInfo EndpointType,
// destinationAddress SEQUENCE OF AliasAddress OPTIONAL, ...}.
func setupDestination(r *per.Reader) []alias {
	opt, _ := r.Sequence(7, true)
	r.ObjectIdentifier()
	if opt.Has(0) {
		skipTransportAddress(r)
	}
	if opt.Has(1) {
		readAliases(r)
	}
	skipEndpointType(r)
	if !opt.Has(2) {
		return nil
	}
	dest, _ := readAliases(r)
	return dest
}

// skipFacilityUUIE: SEQUENCE {protocolIdentifier, alternativeAddress
// TransportAddress OPTIONAL, alternativeAliasAddress SEQUENCE OF
// AliasAddress OPTIONAL, conferenceID OCTET STRING(SIZE(16)) OPTIONAL,
// reason FacilityReason, ...}.
func skipFacilityUUIE(r *per.Reader) {
	opt, ext := r.Sequence(3, true)
	r.ObjectIdentifier()
	if opt.Has(0) {
		skipTransportAddress(r)
	}
	if opt.Has(1) {
		readAliases(r)
	}
	if opt.Has(2) {
		r.OctetString(16, 16)
	}
	skipNullChoice(r, 4)
	endSequence(r, ext)
}

// RasMessage root alternatives gatehouse reads.
const (
	rasGRQ = 0
	rasGRJ = 2
	rasRRQ = 3
	rasRRJ = 5
	// rasOther stands for the extension alternatives.
	rasOther = -1
)

// rasInfo is what gatehouse needs of one RasMessage.
type rasInfo struct {
	kind int // the root alternative, or rasOther; only GRQ, GRJ, RRQ and RRJ are read further
	// gatekeeperID is the UTF-16BE gatekeeperIdentifier; nil when absent.
	gatekeeperID []byte
	// aliases are the text aliases of a GRQ's endpointAlias or an RRQ's
	// terminalAlias, of aliasCount aliases in all.
	aliases    []alias
	aliasCount int
	// reject is the name of a GRJ's or RRJ's rejectReason.
	reject string
}

func (m *rasInfo) registration() bool { return m.kind == rasGRQ || m.kind == rasRRQ }

// decodeRAS reads a RasMessage: CHOICE {gatekeeperRequest, gatekeeperConfirm,
// gatekeeperReject, registrationRequest, registrationConfirm,
// registrationReject, ... (25 root alternatives), ...}.
func decodeRAS(b []byte) (rasInfo, error) {
	m := rasInfo{kind: rasOther}
	r := per.NewReader(b)
	i, ext := r.Choice(25, true)
	if ext || r.Err() != nil {
		return m, r.Err()
	}
	m.kind = i
	switch i {
	case rasGRQ:
		readGRQ(r, &m)
	case rasGRJ:
		readGRJ(r, &m)
	case rasRRQ:
		readRRQ(r, &m)
	case rasRRJ:
		readRRJ(r, &m)
	}
	return m, r.Err()
}

// readGRQ: GatekeeperRequest ::= SEQUENCE {requestSeqNum INTEGER(1..65535),
// protocolIdentifier, nonStandardData OPTIONAL, rasAddress TransportAddress,
// endpointType EndpointType, gatekeeperIdentifier BMPString(SIZE(1..128))
// OPTIONAL, callServices QseriesOptions OPTIONAL, endpointAlias SEQUENCE OF
// AliasAddress OPTIONAL, ...}.
func readGRQ(r *per.Reader, m *rasInfo) {
	opt, _ := r.Sequence(4, true)
	r.Constrained(1, 65535)
	r.ObjectIdentifier()
	if opt.Has(0) {
		skipNonStandardParameter(r)
	}
	skipTransportAddress(r)
	skipEndpointType(r)
	if opt.Has(1) {
		m.gatekeeperID = readGatekeeperID(r)
	}
	if opt.Has(2) {
		skipQseriesOptions(r)
	}
	if opt.Has(3) {
		m.aliases, m.aliasCount = readAliases(r)
	}
}

// readRRQ: RegistrationRequest ::= SEQUENCE {requestSeqNum, protocolIdentifier,
// nonStandardData OPTIONAL, discoveryComplete BOOLEAN, callSignalAddress
// SEQUENCE OF TransportAddress, rasAddress SEQUENCE OF TransportAddress,
// terminalType EndpointType, terminalAlias SEQUENCE OF AliasAddress OPTIONAL,
// gatekeeperIdentifier OPTIONAL, endpointVendor VendorIdentifier, ...}.
func readRRQ(r *per.Reader, m *rasInfo) {
	opt, _ := r.Sequence(3, true)
	r.Constrained(1, 65535)
	r.ObjectIdentifier()
	if opt.Has(0) {
		skipNonStandardParameter(r)
	}
	r.Bool()
	skipTransportAddresses(r)
	skipTransportAddresses(r)
	skipEndpointType(r)
	if opt.Has(1) {
		m.aliases, m.aliasCount = readAliases(r)
	}
	if opt.Has(2) {
		m.gatekeeperID = readGatekeeperID(r)
	}
}

// readGatekeeperID reads a GatekeeperIdentifier, BMPString(SIZE(1..128)).
// It is never nil when the read succeeds.
func readGatekeeperID(r *per.Reader) []byte {
	id := r.BMPString(1, 128)
	if r.Err() == nil && id == nil {
		r.Fail(errBadString)
	}
	return id
}

// Reject reasons, by alternative: the root ones, then the extensions.
var (
	grjReasons = [2][]string{
		{"resourceUnavailable", "terminalExcluded", "invalidRevision", "undefinedReason"},
		{"securityDenial", "genericDataReason", "neededFeatureNotSupported", "securityError"},
	}
	rrjReasons = [2][]string{
		{"discoveryRequired", "invalidRevision", "invalidCallSignalAddress", "invalidRASAddress",
			"duplicateAlias", "invalidTerminalType", "undefinedReason", "transportNotSupported"},
		{"transportQOSNotSupported", "resourceUnavailable", "invalidAlias", "securityDenial",
			"fullRegistrationRequired", "additiveRegistrationNotSupported", "invalidTerminalAliases",
			"genericDataReason", "neededFeatureNotSupported", "securityError", "registerWithAssignedGK"},
	}
)

// reasonName names alternative i (an extension one when ext) of a reject
// reason CHOICE.
func reasonName(names [2][]string, i int, ext bool) string {
	list := names[0]
	if ext {
		list = names[1]
	}
	if i < 0 || i >= len(list) {
		return "unknown"
	}
	return list[i]
}

// readGRJ: GatekeeperReject ::= SEQUENCE {requestSeqNum, protocolIdentifier,
// nonStandardData OPTIONAL, gatekeeperIdentifier OPTIONAL, rejectReason
// GatekeeperRejectReason, ...}.
func readGRJ(r *per.Reader, m *rasInfo) {
	opt, _ := r.Sequence(2, true)
	r.Constrained(1, 65535)
	r.ObjectIdentifier()
	if opt.Has(0) {
		skipNonStandardParameter(r)
	}
	if opt.Has(1) {
		m.gatekeeperID = readGatekeeperID(r)
	}
	i, ext := r.Choice(len(grjReasons[0]), true)
	m.reject = reasonName(grjReasons, i, ext)
}

// readRRJ: RegistrationReject ::= SEQUENCE {requestSeqNum, protocolIdentifier,
// nonStandardData OPTIONAL, rejectReason RegistrationRejectReason,
// gatekeeperIdentifier OPTIONAL, ...}.
func readRRJ(r *per.Reader, m *rasInfo) {
	opt, _ := r.Sequence(2, true)
	r.Constrained(1, 65535)
	r.ObjectIdentifier()
	if opt.Has(0) {
		skipNonStandardParameter(r)
	}
	i, ext := r.Choice(len(rrjReasons[0]), true)
	m.reject = reasonName(rrjReasons, i, ext)
}
