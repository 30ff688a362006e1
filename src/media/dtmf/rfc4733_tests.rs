use super::*;

fn d(c: char) -> Digit {
    Digit::from_char(c).unwrap()
}

#[test]
fn start_repeats_and_three_ends_give_one_key() {
    let mut r = EventReceiver::default();
    let mut keys = vec![];
    for (i, end) in [false, false, false, true, true, true]
        .into_iter()
        .enumerate()
    {
        keys.extend(r.on_packet(7, 1000, &encode(d('5'), end, 160 * (i as u16 + 1))));
    }
    assert_eq!(keys, vec![d('5')]);
}

#[test]
fn same_key_twice_is_two_events_by_timestamp() {
    let mut r = EventReceiver::default();
    assert_eq!(
        r.on_packet(7, 1000, &encode(d('1'), true, 800)),
        Some(d('1'))
    );
    assert_eq!(
        r.on_packet(7, 2000, &encode(d('1'), false, 160)),
        Some(d('1'))
    );
    assert_eq!(r.on_packet(7, 2000, &encode(d('1'), true, 800)), None);
}

#[test]
fn lost_start_still_counts_and_garbage_is_ignored() {
    let mut r = EventReceiver::default();
    assert_eq!(r.on_packet(7, 5, &encode(d('#'), true, 800)), Some(d('#')));
    assert_eq!(r.on_packet(7, 6, &[200, 0, 0, 0]), None);
    assert_eq!(r.on_packet(7, 7, &[1, 0]), None);
}

#[test]
fn late_packets_of_an_earlier_event_are_not_a_new_key() {
    let mut r = EventReceiver::default();
    assert_eq!(
        r.on_packet(7, 1000, &encode(d('1'), false, 160)),
        Some(d('1'))
    );
    assert_eq!(
        r.on_packet(7, 1960, &encode(d('2'), false, 160)),
        Some(d('2'))
    );
    // The end packets of '1' arrive after the start of '2'.
    assert_eq!(r.on_packet(7, 1000, &encode(d('1'), true, 800)), None);
    // Timestamps wrap around 2^32 and still move forward.
    let mut r = EventReceiver::default();
    assert_eq!(
        r.on_packet(7, u32::MAX - 100, &encode(d('3'), false, 160)),
        Some(d('3'))
    );
    assert_eq!(
        r.on_packet(7, 60, &encode(d('4'), false, 160)),
        Some(d('4'))
    );
}

#[test]
fn repeated_sequence_numbers_do_not_matter() {
    // The receiver never looks at sequence numbers: two events sent with one sequence number
    // by a buggy phone are still two keys, and repeats of one are still one.
    let mut r = EventReceiver::default();
    let mut keys = vec![];
    for ts in [100u32, 100, 100, 900, 900, 900] {
        keys.extend(r.on_packet(7, ts, &encode(d('9'), ts == 900, 160)));
    }
    assert_eq!(keys, vec![d('9'), d('9')]);
}

#[test]
fn a_new_stream_starts_a_new_timestamp_space() {
    let mut r = EventReceiver::default();
    assert_eq!(
        r.on_packet(1, 50_000, &encode(d('1'), false, 160)),
        Some(d('1'))
    );
    // After a re-INVITE the phone restarts its stream with a new SSRC and a lower timestamp.
    assert_eq!(
        r.on_packet(2, 10, &encode(d('2'), false, 160)),
        Some(d('2'))
    );
}
