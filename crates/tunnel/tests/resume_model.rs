//! The edge's `Retain` and the origins' `Dedupe` run together against a model, over
//! random pushes, acknowledgements, streams dying with frames and acks in flight, and
//! resumes at the same origin or the other (a fixed xorshift seed per run, so every run is
//! the same). No sockets: the stream is two queues.
//!
//! What must hold whatever happens:
//! - no hub gets a frame twice, and every frame it gets is the one pushed with that seq;
//! - a hub never gets a video frame whose references it lacks;
//! - a resume sends the configuration in force where it starts, then contiguous frames;
//! - the origins' count of missing frames is at most the edge's count of lost ones;
//! - within the bounds (nothing evicted), no frame is lost: every frame pushed reaches a
//!   hub, and no gap is seen.

use bytes::Bytes;
use longhaul_tunnel::class::FrameClass;
use longhaul_tunnel::dedupe::{Admit, Dedupe};
use longhaul_tunnel::retain::{ResumePoint, Retain, RetainLimits};
use longhaul_tunnel::MediaFrame;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A publication's hub at one origin: what it was given, and the admission state it
/// keeps with the publication across streams.
struct Hub {
    delivered: Vec<u64>,
    set: BTreeSet<u64>,
    dedupe: Dedupe,
}

impl Hub {
    fn new(dedupe: Dedupe) -> Self {
        Self {
            delivered: Vec::new(),
            set: BTreeSet::new(),
            dedupe,
        }
    }

    /// Takes one frame off the stream.
    fn take(&mut self, wire: Wire, now: Instant, model: &Model, totals: &mut Totals, step: usize) {
        let (seq, f) = match wire {
            Wire::Config(class) => {
                assert_eq!(self.dedupe.admit_config(class), Admit::Deliver);
                return;
            }
            Wire::Seq(seq, f) => (seq, f),
        };
        let class = FrameClass::of(f.kind, &f.payload);
        if self.dedupe.admit(seq, class, now) != Admit::Deliver {
            return;
        }
        assert_eq!(f, model.pushed[seq as usize], "step {step}: frame {seq}");
        assert!(
            self.delivered.last().is_none_or(|&l| l < seq),
            "step {step}: frame {seq} delivered twice or out of order"
        );
        check_references(self, &model.classes, seq, step);
        self.delivered.push(seq);
        self.set.insert(seq);
        totals.delivered += 1;
    }
}

enum Wire {
    Config(FrameClass),
    Seq(u64, MediaFrame),
}

struct Stream {
    origin: usize,
    to_origin: VecDeque<Wire>,
    to_edge: VecDeque<u64>,
}

/// Every frame pushed, by seq.
#[derive(Default)]
struct Model {
    pushed: Vec<MediaFrame>,
    classes: Vec<FrameClass>,
}

#[derive(Debug, Default)]
struct Totals {
    lost: u64,
    missing: u64,
    duplicates: u64,
    skipped: u64,
    /// Unacknowledged frames the edge gave up for its bounds.
    evicted: u64,
    /// Acknowledged frames of the current GOP the edge gave up for its bounds.
    trimmed: u64,
    resumes: u64,
    delivered: u64,
}

fn make_frame(rng: &mut Rng, n: u64, ts: u32) -> MediaFrame {
    let (kind, head, len): (u8, &[u8], u64) = if n.is_multiple_of(30) {
        (9, &[0x17, 1, 0, 0, 0], 1000 + rng.below(2000))
    } else {
        match rng.below(200) {
            0 => (9, &[0x17, 0, 0, 0, 0], 6),    // a new AVC sequence header
            1 => (8, &[0xaf, 0, 0x12, 0x10], 4), // AAC sequence header
            2 => (18, b"\x02\x00\x0aonMetaData", 40), // metadata
            3 => (18, b"\x02\x00\x0aonCuePoint", 20), // an event
            4..=80 => (8, &[0xaf, 1], 10 + rng.below(300)),
            _ => (9, &[0x27, 1, 0, 0, 0], 20 + rng.below(600)),
        }
    };
    let mut payload = head.to_vec();
    // The tail tells frames apart, so a wrong frame under the right seq shows.
    payload.extend_from_slice(&n.to_be_bytes());
    payload.resize((len as usize).max(payload.len()), (n % 251) as u8);
    MediaFrame {
        kind,
        timestamp: ts,
        payload: Bytes::from(payload),
    }
}

/// The edge's side of a resume: the plan for `origin`, checked against the model, and
/// the stream that carries it.
fn resume(
    retain: &mut Retain,
    model: &Model,
    origin: usize,
    origin_acked: Option<u64>,
    initial_ack: Option<u64>,
    totals: &mut Totals,
    step: usize,
) -> Stream {
    // After what this origin acknowledged; for one that acknowledged nothing, from the
    // keyframe.
    let point = origin_acked.map_or(ResumePoint::Keyframe, ResumePoint::After);
    let plan = retain.resume_plan(point);
    totals.lost += plan.lost;
    totals.resumes += 1;
    // The configuration is the one in force where the resume starts.
    let mut expected = BTreeMap::new();
    for seq in 0..plan.resume_from as usize {
        if let FrameClass::Config(slot) = model.classes[seq] {
            expected.insert(slot, model.pushed[seq].clone());
        }
    }
    let expected: Vec<MediaFrame> = expected.into_values().collect();
    assert_eq!(plan.config, expected, "step {step}: configuration");
    for (i, (seq, f)) in plan.frames.iter().enumerate() {
        assert_eq!(*seq, plan.resume_from + i as u64, "step {step}: contiguous");
        assert_eq!(*f, model.pushed[*seq as usize], "step {step}: frame {seq}");
    }
    let mut to_origin: VecDeque<Wire> = plan
        .config
        .iter()
        .map(|f| Wire::Config(FrameClass::of(f.kind, &f.payload)))
        .collect();
    to_origin.extend(plan.frames.into_iter().map(|(seq, f)| Wire::Seq(seq, f)));
    Stream {
        origin,
        to_origin,
        to_edge: initial_ack.into_iter().collect(),
    }
}

fn run(seed: u64, limits: RetainLimits, steps: usize) -> Totals {
    let mut rng = Rng(seed);
    let mut now = Instant::now();
    let mut retain = Retain::new(limits);
    let mut model = Model::default();
    let mut hubs: [Option<Hub>; 2] = [Some(Hub::new(Dedupe::new())), None];
    let mut stream = Some(Stream {
        origin: 0,
        to_origin: VecDeque::new(),
        to_edge: VecDeque::new(),
    });
    let mut last_origin = 0;
    // The highest seq the origin the publication is at acknowledged since it came there:
    // what the edge's driver keeps to choose where a resume starts.
    let mut origin_acked: Option<u64> = None;
    let mut totals = Totals::default();
    let mut ts = 0u32;

    // The first frames: configuration, then a keyframe.
    let start: [&'static [u8]; 3] = [
        b"\x02\x00\x0aonMetaData",
        &[0x17, 0, 0, 0, 0, 1],
        &[0x17, 1, 0, 0, 0, 0x65],
    ];
    for (i, payload) in start.into_iter().enumerate() {
        let f = MediaFrame {
            kind: if i == 0 { 18 } else { 9 },
            timestamp: 0,
            payload: Bytes::from_static(payload),
        };
        push(&mut retain, &mut model, stream.as_mut(), f, now);
    }

    for step in 0..steps {
        now += Duration::from_millis(rng.below(12));
        // A stream that keeps up, then one that does not (acks stall), in phases.
        let slow = (step / 3_000) % 3 == 2;
        match rng.below(100) {
            0..=44 => {
                if stream.is_some() {
                    ts += 10;
                    let f = make_frame(&mut rng, model.pushed.len() as u64, ts);
                    push(&mut retain, &mut model, stream.as_mut(), f, now);
                }
            }
            45..=79 => {
                // The origin takes what arrived and acknowledges when due.
                let Some(s) = stream.as_mut() else { continue };
                let take = if slow { rng.below(2) } else { 1 + rng.below(8) };
                let hub = hubs[s.origin].as_mut().expect("a stream has its hub");
                for _ in 0..take {
                    let Some(wire) = s.to_origin.pop_front() else {
                        break;
                    };
                    hub.take(wire, now, &model, &mut totals, step);
                }
                if let Some(ack) = hub.dedupe.poll_ack(now) {
                    s.to_edge.push_back(ack);
                }
            }
            80..=94 => {
                // Acks arrive at the edge.
                let Some(s) = stream.as_mut() else { continue };
                if slow && rng.below(4) != 0 {
                    continue;
                }
                while let Some(ack) = s.to_edge.pop_front() {
                    retain.ack(ack, now).expect("acks are of frames sent");
                    origin_acked = origin_acked.max(Some(ack));
                }
            }
            95..=96 => {
                // The stream dies, with whatever was in flight either way.
                stream = None;
            }
            _ => {
                // A dead stream resumes, at the same origin or the other.
                if stream.is_some() {
                    continue;
                }
                let origin = if rng.below(3) == 0 {
                    1 - last_origin
                } else {
                    last_origin
                };
                if origin != last_origin {
                    // The old origin ends the publication; the new one starts it.
                    if let Some(mut old) = hubs[last_origin].take() {
                        collect(&mut totals, &mut old.dedupe);
                    }
                    hubs[origin] = Some(Hub::new(Dedupe::resumed_here()));
                    origin_acked = None;
                    last_origin = origin;
                }
                let hub = hubs[origin]
                    .as_mut()
                    .expect("the hub keeps the publication");
                let initial_ack = hub.dedupe.resume();
                stream = Some(resume(
                    &mut retain,
                    &model,
                    origin,
                    origin_acked,
                    initial_ack,
                    &mut totals,
                    step,
                ));
            }
        }
        let stats = retain.take_stats();
        totals.evicted += stats.evicted_unacked;
        totals.trimmed += stats.trimmed_acked;
    }

    // The end: the stream comes back if it is down, and everything in flight lands.
    let hub = hubs[last_origin].as_mut().expect("hub");
    let mut s = match stream {
        Some(s) => s,
        None => {
            let initial_ack = hub.dedupe.resume();
            resume(
                &mut retain,
                &model,
                last_origin,
                origin_acked,
                initial_ack,
                &mut totals,
                steps,
            )
        }
    };
    while let Some(wire) = s.to_origin.pop_front() {
        hub.take(wire, now, &model, &mut totals, steps);
    }
    now += Duration::from_millis(100);
    s.to_edge.extend(hub.dedupe.poll_ack(now));
    while let Some(ack) = s.to_edge.pop_front() {
        retain.ack(ack, now).expect("ack");
    }
    assert_eq!(
        retain.first_unacked(),
        retain.next_seq(),
        "seed {seed:#x}: all acknowledged in the end"
    );
    collect(&mut totals, &mut hub.dedupe);
    let stats = retain.take_stats();
    totals.evicted += stats.evicted_unacked;
    totals.trimmed += stats.trimmed_acked;

    assert!(
        totals.missing <= totals.lost + totals.trimmed,
        "seed {seed:#x}: origins saw {} missing, the edge counted {} lost and {} trimmed",
        totals.missing,
        totals.lost,
        totals.trimmed
    );
    if totals.evicted + totals.trimmed == 0 && limits.keep_gop_head {
        assert_eq!(
            (totals.lost, totals.missing, totals.skipped),
            (0, 0, 0),
            "seed {seed:#x}: within the bounds nothing is lost"
        );
        // The hub that has the publication now has every frame from where it took it.
        let first = *hub.delivered.first().expect("frames delivered");
        for seq in first..model.pushed.len() as u64 {
            assert!(hub.set.contains(&seq), "seed {seed:#x}: frame {seq} lost");
        }
    }
    totals
}

/// The edge numbers and keeps a frame and writes it to the stream, if there is one.
fn push(
    retain: &mut Retain,
    model: &mut Model,
    stream: Option<&mut Stream>,
    f: MediaFrame,
    now: Instant,
) {
    let seq = retain.push(f.clone(), now);
    assert_eq!(seq, model.pushed.len() as u64, "numbered one by one");
    model.classes.push(FrameClass::of(f.kind, &f.payload));
    model.pushed.push(f.clone());
    if let Some(s) = stream {
        s.to_origin.push_back(Wire::Seq(seq, f));
    }
}

/// A delivered video frame's references are in the hub: everything video since its
/// keyframe was delivered there.
fn check_references(hub: &Hub, classes: &[FrameClass], seq: u64, step: usize) {
    if classes[seq as usize] != FrameClass::Inter {
        return;
    }
    let key = classes[..seq as usize]
        .iter()
        .rposition(|c| *c == FrameClass::Keyframe)
        .expect("a keyframe came first") as u64;
    for s in key..seq {
        if matches!(
            classes[s as usize],
            FrameClass::Keyframe | FrameClass::Inter
        ) {
            assert!(
                hub.set.contains(&s),
                "step {step}: frame {seq} delivered without its reference {s}; the hub's \
                 last frames: {:?}",
                &hub.delivered[hub.delivered.len().saturating_sub(20)..]
            );
        }
    }
}

fn collect(totals: &mut Totals, dedupe: &mut Dedupe) {
    let stats = dedupe.take_stats();
    totals.missing += stats.missing;
    totals.duplicates += stats.duplicates;
    totals.skipped += stats.skipped;
}

#[test]
fn within_the_bounds_nothing_is_lost_and_nothing_is_delivered_twice() {
    for seed in [
        0x9e37_79b9_7f4a_7c15,
        0x1234_5678_9abc_def1,
        0xdead_beef_cafe_f00d,
    ] {
        let t = run(seed, RetainLimits::default(), 30_000);
        eprintln!("seed {seed:#x}: {t:?}");
        assert_eq!(t.evicted, 0, "the default bounds hold this traffic");
        assert!(t.resumes > 50, "the run resumed ({})", t.resumes);
        assert!(t.duplicates > 0, "resumes re-sent frames the origin had");
        assert!(t.delivered > 10_000);
    }
}

#[test]
fn without_the_gop_head_nothing_unacknowledged_is_lost_and_a_new_origin_waits_for_a_keyframe() {
    let limits = RetainLimits {
        keep_gop_head: false,
        ..RetainLimits::default()
    };
    for seed in [0x9e37_79b9_7f4a_7c15, 0x1234_5678_9abc_def1] {
        let t = run(seed, limits, 30_000);
        eprintln!("seed {seed:#x}: {t:?}");
        assert_eq!(
            (t.evicted, t.trimmed),
            (0, 0),
            "the default bounds hold this traffic"
        );
        assert_eq!(t.lost, 0, "every unacknowledged frame was resent");
        assert!(t.resumes > 50, "the run resumed ({})", t.resumes);
        // The price: at an origin new to the publication, frames before the next
        // keyframe lack their references and are held back (counted as skipped).
        assert!(t.skipped > 0, "a resume elsewhere started mid-GOP");
    }
}

#[test]
fn past_the_bounds_losses_are_counted_and_no_reference_is_missing() {
    let tight = RetainLimits {
        max_bytes: 12_000,
        max_messages: 40,
        message_cost: 0,
        keep_gop_head: true,
    };
    for seed in [0x9e37_79b9_7f4a_7c15, 0x0bad_5eed_0bad_5eed] {
        let t = run(seed, tight, 30_000);
        eprintln!("seed {seed:#x}: {t:?}");
        assert!(t.evicted > 0, "the run exercised the bounds");
        assert!(
            t.lost > 0 && t.missing > 0,
            "and lost frames ({} {})",
            t.lost,
            t.missing
        );
        assert!(t.skipped > 0, "and held back frames after gaps");
    }
}
