package ldap

import (
	ber "github.com/go-asn1-ber/asn1-ber"
)

// maxNesting bounds how deep checkEncoding descends. A bind with controls
// nests four levels; SASL credentials are opaque octets.
const maxNesting = 16

// checkEncoding walks every element of msg, one LDAPMessage as measured by
// frame, and refuses what RFC 4511 5.1 and X.690 leave open to more than
// one reading:
//
//   - a tag in the high-tag-number form (X.690 8.1.2.4): LDAP has no tag
//     number above 30, and asn1-ber reads 0x7F 0x00 as a BindRequest where
//     another decoder sees an unknown tag;
//   - the indefinite length form (RFC 4511 5.1: definite form only), and
//     lengths beyond maxLengthOctets;
//   - a constructed OCTET STRING (RFC 4511 5.1: primitive form only), or any
//     universal type in the form it does not have;
//   - an INTEGER or ENUMERATED whose first nine bits are all 0 or all 1
//     (X.690 8.3.2), or empty, and a BOOLEAN whose octet is not 0x00 or 0xFF
//     (RFC 4511 5.1);
//
// Elements that do not fit their parent, or nest deeper than maxNesting,
// are malformed rather than non-canonical.
//
// A length in more octets than needed (0x84 00 00 00 05) is allowed: X.690
// 8.1.3.5 permits it, every decoder reads it alike, and Windows and Java
// LDAP clients send it.
func checkEncoding(msg []byte) error {
	n, err := element(msg, 0)
	if err != nil {
		return err
	}
	if n != len(msg) {
		return errMalformed
	}
	return nil
}

// element checks the element at the start of b and returns its size.
func element(b []byte, depth int) (int, error) {
	if depth > maxNesting {
		return 0, errMalformed
	}
	tag, hdr, n, err := header(b)
	switch {
	case err == errHighTag || err == errIndefinite:
		return 0, errEncoding
	case err != nil || hdr+n > len(b):
		return 0, errMalformed // truncated, or a length past its parent
	}
	content := b[hdr : hdr+n]
	constructed := tag&byte(ber.TypeConstructed) != 0
	if ber.Class(tag&0xC0) == ber.ClassUniversal {
		if err := universalForm(ber.Tag(tag&0x1F), constructed, content); err != nil {
			return 0, err
		}
	}
	if constructed {
		for len(content) > 0 {
			m, err := element(content, depth+1)
			if err != nil {
				return 0, err
			}
			content = content[m:]
		}
	}
	return hdr + n, nil
}

// universalForm checks a universal element of the types LDAP uses.
func universalForm(tag ber.Tag, constructed bool, v []byte) error {
	switch tag {
	case ber.TagSequence, ber.TagSet:
		if !constructed {
			return errEncoding
		}
	case ber.TagBoolean:
		if constructed || len(v) != 1 || v[0] != 0x00 && v[0] != 0xFF {
			return errEncoding
		}
	case ber.TagInteger, ber.TagEnumerated:
		if constructed || len(v) == 0 ||
			len(v) > 1 && (v[0] == 0x00 && v[1]&0x80 == 0 || v[0] == 0xFF && v[1]&0x80 != 0) {
			return errEncoding
		}
	case ber.TagOctetString, ber.TagNULL:
		if constructed || tag == ber.TagNULL && len(v) != 0 {
			return errEncoding
		}
	}
	return nil
}
