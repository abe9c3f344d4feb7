//! The streams over an in-memory connection: opening, refusing, both directions, ends,
//! resets, many streams at once with one reader stalled, and the connection's end.

use super::*;
use std::time::Duration;

fn pair() -> ((Mux, Incoming), (Mux, Incoming)) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    (
        Mux::start(ar, aw, Side::Oned),
        Mux::start(br, bw, Side::Agent),
    )
}

fn write(path: &str) -> Open {
    Open::Write {
        path: path.into(),
        max_bytes: 1 << 30,
        durable: true,
    }
}

#[tokio::test]
async fn a_stream_carries_bytes_both_ways_and_its_ends() {
    let ((oned, _), (_agent, mut inc)) = pair();
    let served = tokio::spawn(async move {
        let s = inc.recv().await.unwrap();
        assert_eq!(s.request, write("/x"));
        let st = s.accept(&Accepted { size: Some(7) });
        let (mut r, mut w) = st.split();
        let got = r.read_to_end().await.unwrap();
        // The agent's answer after the opener's end: a confirmation.
        w.write(&(got.len() as u64).to_be_bytes()).await.unwrap();
        w.finish().await.unwrap();
        got
    });
    let (st, acc) = oned.open(&write("/x")).await.unwrap();
    assert_eq!(acc.size, Some(7));
    let (mut r, mut w) = st.split();
    let data: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
    w.write(&data).await.unwrap();
    w.finish().await.unwrap();
    let answer = r.read_to_end().await.unwrap();
    assert_eq!(u64::from_be_bytes(answer.try_into().unwrap()), 10_000_000);
    assert_eq!(served.await.unwrap(), data);
    drop((r, w));
    tokio::task::yield_now().await;
    assert_eq!(
        oned.streams(),
        0,
        "a stream ended on both sides is forgotten"
    );
}

#[tokio::test]
async fn a_refused_stream_says_why() {
    let ((oned, _), (_agent, mut inc)) = pair();
    tokio::spawn(async move {
        let s = inc.recv().await.unwrap();
        s.reject("/etc/shadow is outside the datastores");
        // Dropping an unanswered one refuses it too.
        let s = inc.recv().await.unwrap();
        drop(s);
    });
    let e = oned.open(&write("/etc/shadow")).await.err().unwrap();
    assert_eq!(
        e,
        StreamError::Rejected("/etc/shadow is outside the datastores".into())
    );
    let e = oned.open(&Open::Tcp { port: 5900 }).await.err().unwrap();
    assert!(
        matches!(e, StreamError::Rejected(ref m) if m.contains("not served")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_reset_reaches_the_other_sides_reads_and_writes() {
    let ((oned, _), (_agent, mut inc)) = pair();
    tokio::spawn(async move {
        let st = inc.recv().await.unwrap().accept(&Accepted::default());
        let (mut r, w) = st.split();
        let _ = r.read().await.unwrap();
        w.reset("Not enough space in datastore 1");
    });
    let (st, _) = oned.open(&write("/d/1/x")).await.unwrap();
    let (mut r, mut w) = st.split();
    w.write(b"first").await.unwrap();
    let e = r.read().await.unwrap_err();
    assert_eq!(
        e,
        StreamError::Reset("Not enough space in datastore 1".into())
    );
    // Writing after the reset fails with the reason.
    let mut failed = None;
    for _ in 0..10 {
        if let Err(e) = w.write(&[0; 1024]).await {
            failed = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        failed,
        Some(StreamError::Reset("Not enough space in datastore 1".into()))
    );
}

#[tokio::test]
async fn a_stream_whose_reader_stalls_holds_up_nothing_else() {
    let ((oned, _), (_agent, mut inc)) = pair();
    let (stalled_tx, stalled_rx) = tokio::sync::oneshot::channel::<StreamReader>();
    tokio::spawn(async move {
        // The first stream is accepted and never read.
        let first = inc.recv().await.unwrap().accept(&Accepted::default());
        let _ = stalled_tx.send(first.split().0);
        // The second is read to its end and answered.
        let (mut r, mut w) = inc
            .recv()
            .await
            .unwrap()
            .accept(&Accepted::default())
            .split();
        let n = r.read_to_end().await.unwrap().len();
        w.write(&(n as u64).to_be_bytes()).await.unwrap();
        w.finish().await.unwrap();
        std::future::pending::<()>().await;
    });
    let (slow, _) = oned.open(&write("/slow")).await.unwrap();
    let (_sr, mut sw) = slow.split();
    // The stalled stream's sender stops at its window ...
    let blocked = tokio::spawn(async move {
        sw.write(&vec![1u8; (WINDOW as usize) * 3]).await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocked.is_finished(), "the sender waits for credit");
    // ... while another stream goes through, many times the window.
    let (fast, _) = oned.open(&write("/fast")).await.unwrap();
    let (mut fr, mut fw) = fast.split();
    let big = vec![2u8; (WINDOW as usize) * 4];
    tokio::time::timeout(Duration::from_secs(10), async {
        fw.write(&big).await.unwrap();
        fw.finish().await.unwrap();
        let answer = fr.read_to_end().await.unwrap();
        assert_eq!(
            u64::from_be_bytes(answer.try_into().unwrap()),
            big.len() as u64
        );
    })
    .await
    .expect("the other stream is not held up");
    // Reading the stalled stream lets its sender finish.
    let mut stalled = stalled_rx.await.unwrap();
    let mut got = 0;
    while got < (WINDOW as usize) * 3 {
        got += stalled.read().await.unwrap().unwrap().len();
    }
    tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_end_of_the_connection_fails_every_stream_and_new_opens() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (ar, aw) = tokio::io::split(a);
    let (oned, _) = Mux::start(ar, aw, Side::Oned);
    let (br, bw) = tokio::io::split(b);
    let (agent, mut inc) = Mux::start(br, bw, Side::Agent);
    tokio::spawn(async move {
        let st = inc.recv().await.unwrap().accept(&Accepted::default());
        std::future::pending::<()>().await;
        drop(st);
    });
    let (st, _) = oned.open(&Open::Tcp { port: 5901 }).await.unwrap();
    let (mut r, _w) = st.split();
    agent.close();
    let e = tokio::time::timeout(Duration::from_secs(5), r.read())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(e, StreamError::Reset(ref m) if m.contains("connection ended")),
        "{e:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), oned.closed())
        .await
        .unwrap();
    assert!(matches!(
        oned.open(&Open::Tcp { port: 1 }).await,
        Err(StreamError::Closed(_))
    ));
}

#[tokio::test]
async fn either_side_opens_and_a_dropped_stream_is_reset() {
    let ((oned, mut oinc), (agent, _)) = pair();
    tokio::spawn(async move {
        let (mut r, _w) = oinc
            .recv()
            .await
            .unwrap()
            .accept(&Accepted::default())
            .split();
        let e = r.read_to_end().await.unwrap_err();
        assert!(
            matches!(e, StreamError::Reset(ref m) if m.contains("before its end")),
            "{e:?}"
        );
    });
    let (st, _) = agent
        .open(&Open::Read {
            path: "/d/0/1/disk.0".into(),
            offset: 0,
        })
        .await
        .unwrap();
    let (_r, mut w) = st.split();
    w.write(b"part of it").await.unwrap();
    drop((_r, w));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(oned.streams(), 0);
    assert_eq!(agent.streams(), 0);
}
