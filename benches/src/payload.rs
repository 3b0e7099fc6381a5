//! Vehicle data shaped like `shared/VEHICLE-DATA.md`: 17-character VINs and
//! GB/T 32960.3 packets (`##`, command, response flag, VIN, encryption, data
//! length, data unit, XOR check) of realistic sizes.
//!
//! Real-time reports carry whole-vehicle, drive-motor, position, extreme-value,
//! alarm, cell-voltage and probe-temperature blocks (about 330-480 bytes
//! depending on the cell count); alarms, positions and logins are small.

use rand::Rng;

/// VIN characters: digits and capital letters except I, O and Q.
const VIN_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";

/// The `i`-th vehicle's VIN: a fixed world-manufacturer prefix and the
/// vehicle number spelled in the VIN alphabet, so VINs are distinct and stable.
pub fn vin(i: u64) -> [u8; 17] {
    let mut v = *b"LSVAB000000000000";
    let mut n = i;
    for slot in v[5..].iter_mut().rev() {
        *slot = VIN_CHARS[(n % VIN_CHARS.len() as u64) as usize];
        n /= VIN_CHARS.len() as u64;
    }
    v
}

/// Kinds of message a vehicle sends, each to its own topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Real-time report (command 0x02), the bulk of the traffic.
    Realtime,
    /// Position-only report.
    Position,
    /// Alarm report with fault codes.
    Alarm,
    /// Vehicle login (command 0x01).
    Login,
}

impl Kind {
    /// All kinds, in topic order.
    pub const ALL: [Kind; 4] = [Kind::Realtime, Kind::Position, Kind::Alarm, Kind::Login];

    /// Topic suffix of this kind.
    pub fn topic_suffix(self) -> &'static str {
        match self {
            Kind::Realtime => "realtime",
            Kind::Position => "position",
            Kind::Alarm => "alarm",
            Kind::Login => "login",
        }
    }

    /// Picks a kind with the mix of a driving fleet: mostly real-time
    /// reports, some positions, a few alarms and logins.
    pub fn pick(rng: &mut impl Rng) -> Kind {
        match rng.random_range(0..100u32) {
            0..80 => Kind::Realtime,
            80..92 => Kind::Position,
            92..97 => Kind::Alarm,
            _ => Kind::Login,
        }
    }
}

/// Builds one GB/T 32960 packet of `kind` for `vin` into `out` (cleared first).
pub fn packet(kind: Kind, vin: &[u8; 17], rng: &mut impl Rng, out: &mut Vec<u8>) {
    out.clear();
    let command = match kind {
        Kind::Login => 0x01,
        _ => 0x02,
    };
    out.extend_from_slice(b"##");
    out.push(command);
    out.push(0xFE);
    out.extend_from_slice(vin);
    out.push(0x01); // not encrypted
    out.extend_from_slice(&[0, 0]); // data length, patched below
    let unit_start = out.len();
    time(rng, out);
    match kind {
        Kind::Realtime => realtime(rng, out),
        Kind::Position => position(rng, out),
        Kind::Alarm => alarm(rng, out),
        Kind::Login => login(rng, out),
    }
    let len = (out.len() - unit_start) as u16;
    out[unit_start - 2..unit_start].copy_from_slice(&len.to_be_bytes());
    let check = out[2..].iter().fold(0u8, |a, b| a ^ b);
    out.push(check);
}

fn time(rng: &mut impl Rng, out: &mut Vec<u8>) {
    out.extend_from_slice(&[26, 11, 22]);
    out.extend_from_slice(&[
        rng.random_range(0..24),
        rng.random_range(0..60),
        rng.random_range(0..60),
    ]);
}

fn random_bytes(rng: &mut impl Rng, n: usize, out: &mut Vec<u8>) {
    out.extend((0..n).map(|_| rng.random::<u8>()));
}

fn realtime(rng: &mut impl Rng, out: &mut Vec<u8>) {
    // 0x01 whole vehicle: 20 bytes of state, speed, odometer, voltage, ...
    out.push(0x01);
    random_bytes(rng, 20, out);
    // 0x02 drive motors: count + 12 bytes per motor.
    let motors = rng.random_range(1..=2u8);
    out.extend_from_slice(&[0x02, motors]);
    random_bytes(rng, 12 * motors as usize, out);
    position(rng, out);
    // 0x06 extreme values: 14 bytes.
    out.push(0x06);
    random_bytes(rng, 14, out);
    // 0x07 alarms: level, flags, empty fault lists.
    out.extend_from_slice(&[0x07, 0]);
    random_bytes(rng, 4, out);
    out.extend_from_slice(&[0, 0, 0, 0]);
    // 0x08 cell voltages: one subsystem, 96-160 cells of 2 bytes.
    let cells = rng.random_range(96..=160u16);
    out.extend_from_slice(&[0x08, 1, 1]);
    random_bytes(rng, 8, out); // voltage, current, cell count, frame start
    out.push(cells as u8);
    random_bytes(rng, 2 * cells as usize, out);
    // 0x09 probe temperatures: one subsystem, 16-32 probes of 1 byte.
    let probes = rng.random_range(16..=32u8);
    out.extend_from_slice(&[0x09, 1, 1, 0, probes]);
    random_bytes(rng, probes as usize, out);
}

fn position(rng: &mut impl Rng, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x05, 0]);
    let lon: u32 = rng.random_range(73_000_000..135_000_000);
    let lat: u32 = rng.random_range(18_000_000..53_000_000);
    out.extend_from_slice(&lon.to_be_bytes());
    out.extend_from_slice(&lat.to_be_bytes());
}

fn alarm(rng: &mut impl Rng, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x07, rng.random_range(1..=3)]);
    random_bytes(rng, 4, out); // general alarm flags
    for _ in 0..4 {
        let codes = rng.random_range(0..=3u8);
        out.push(codes);
        random_bytes(rng, 4 * codes as usize, out);
    }
}

fn login(rng: &mut impl Rng, out: &mut Vec<u8>) {
    random_bytes(rng, 2, out); // serial
    out.extend_from_slice(b"89860000000000000000"); // ICCID
    out.extend_from_slice(&[1, 20]); // one battery subsystem, code length
    out.extend_from_slice(b"BAT0000000000000000A");
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn vins_are_17_valid_distinct_characters() {
        let a = vin(0);
        let b = vin(99_999);
        assert_ne!(a, b);
        for v in [a, b, vin(u64::MAX)] {
            assert!(v.iter().all(|c| VIN_CHARS.contains(c)), "{v:?}");
            assert!(!v.iter().any(|c| b"IOQ".contains(c)));
        }
    }

    #[test]
    fn packets_have_the_standard_frame_and_realistic_sizes() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut out = Vec::new();
        let v = vin(42);
        for _ in 0..200 {
            for kind in Kind::ALL {
                packet(kind, &v, &mut rng, &mut out);
                assert_eq!(&out[..2], b"##");
                assert_eq!(&out[4..21], &v);
                let len = u16::from_be_bytes([out[22], out[23]]) as usize;
                assert_eq!(out.len(), 24 + len + 1);
                let check = out[2..out.len() - 1].iter().fold(0u8, |a, b| a ^ b);
                assert_eq!(*out.last().expect("non-empty"), check);
                let range = match kind {
                    Kind::Realtime => 300..=520,
                    _ => 30..=120,
                };
                assert!(range.contains(&out.len()), "{kind:?}: {}", out.len());
            }
        }
    }
}
