//! The anomaly lab against the embedded server: every cell of the observed matrix, for both
//! deadlock policies, must match DESIGN.md's target (what `sharddb anomalies` checks and exits
//! 0 on). The matrix is observed live — each scenario runs with real sessions over pgwire — so a
//! change in the engine's isolation shows up here as a differing cell, printed with the reason.

mod common;

use std::time::Duration;

use common::TestServer;
use sharddb::anomalies::matrix::{Anomaly, Target};
use sharddb::anomalies::{ExpectChoice, LabOptions, PolicyChoice, run_lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn observed_matrix_matches_the_target_for_both_policies() {
    let server = TestServer::start(4).await;
    let opts = LabOptions {
        url: server.url(),
        policy: PolicyChoice::Both,
        step_timeout: Duration::from_millis(300),
        expect: ExpectChoice::Auto,
        show: Some(Anomaly::P4),
        only: Vec::new(),
    };
    let report = tokio::time::timeout(Duration::from_secs(300), run_lab(&opts))
        .await
        .expect("the lab finishes")
        .expect("the lab runs");
    let text = report.render(true);
    println!("{text}");
    assert_eq!(report.detected, Target::Sharddb);
    assert_eq!(report.matrices.len(), 2, "one matrix per deadlock policy");
    assert!(report.all_match(), "cells differ from the target:\n{text}");
    // The transcript of the chosen scenario is there, with its SQL.
    assert!(
        report
            .transcripts
            .iter()
            .any(|t| t.contains("UPDATE anomaly_test SET value = 11 WHERE id = 1")),
        "P4 transcript missing"
    );
    server.stop().await;
}
