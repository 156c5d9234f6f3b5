//! frame_len + Message::decode on arbitrary octets, under every negotiated context; whatever decodes must
//! re-encode to something that decodes again, and non-UPDATE messages must survive the trip unchanged.
//! Run (from bgpd/): `cargo +nightly fuzz run -O decode fuzz/corpus/decode fuzz/seeds/decode -- -runs=10000000`
//! (on stable: `RUSTC_BOOTSTRAP=1 cargo fuzz run ...`). Seeds: the first octet selects the negotiated state.
#![no_main]

use bgpd::packet::{Afi, DecodeCxt, EncodeCxt, FamilySet, Message, NotificationMsg, Safi};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    // The first octet picks the negotiated state, so one corpus covers every decoder path.
    let fam = |bit: u8| -> FamilySet {
        let mut s = FamilySet::empty();
        if sel & bit != 0 {
            s.insert((Afi::Ipv4, Safi::Unicast));
        }
        if sel & (bit << 1) != 0 {
            s.insert((Afi::Ipv6, Safi::Unicast));
        }
        s
    };
    let dcx = DecodeCxt {
        four_octet_as: sel & 1 != 0,
        add_path: fam(2),
        extended_next_hop: fam(8),
    };
    let ecx = EncodeCxt {
        four_octet_as: dcx.four_octet_as,
        add_path: dcx.add_path,
        extended_next_hop: dcx.extended_next_hop,
    };
    // Frame the stream as the session reader does, then also decode the unframed rest directly.
    loop {
        match bgpd::packet::frame_len(rest) {
            Ok(Some(n)) => {
                check(&rest[..n], &dcx, &ecx);
                rest = &rest[n..];
            }
            Ok(None) => break,
            Err(e) => {
                let _ = NotificationMsg::from(&e);
                break;
            }
        }
    }
    check(rest, &dcx, &ecx);
});

fn check(frame: &[u8], dcx: &DecodeCxt, ecx: &EncodeCxt) {
    match Message::decode(frame, dcx) {
        Err(e) => {
            let _ = NotificationMsg::from(&e);
        }
        Ok(m) => {
            let mut b = BytesMut::new();
            if m.encode(ecx, &mut b).is_err() {
                // Too long after normalisation (e.g. AS4_PATH added for a 2-octet peer): a clean error is fine.
                assert!(b.is_empty());
                return;
            }
            let again = Message::decode(&b, dcx).expect("re-encoded message must decode");
            if !matches!(m, Message::Update(_)) {
                assert_eq!(again, m);
            }
        }
    }
}
