//! Throughput as a small inline SVG (no chart library): bars for messages accepted,
//! a line for sessions opened, per bucket of server time.

use super::clock::use_server_now;
use super::{use_strings, use_ui};
use crate::i18n::fill;
use crate::state::Sample;
use yew::prelude::*;

const WIDTH: u64 = 300;
const HEIGHT: u64 = 80;

#[function_component(Chart)]
pub fn chart() -> Html {
    let ui = use_ui();
    let s = use_strings();
    let now = use_server_now();
    let series = ui.chart.series(now);
    let caption = fill(
        s.chart_caption,
        &[
            ("bucket", &(ui.chart.bucket_ms / 1000).to_string()),
            (
                "span",
                &(ui.chart.bucket_ms * ui.chart.buckets as u64 / 60_000).to_string(),
            ),
        ],
    );
    let peak = series
        .iter()
        .map(|p| p.messages.max(p.sessions))
        .max()
        .unwrap_or(0)
        .max(1);
    let n = series.len().max(1) as u64;
    let slot = WIDTH / n;
    let y = |v: u64| HEIGHT - v * (HEIGHT - 4) / peak;
    let bars = series.iter().enumerate().map(|(i, p): (usize, &Sample)| {
        let x = i as u64 * slot;
        let top = y(p.messages);
        html! {
            <rect class="bar" x={(x + 1).to_string()} y={top.to_string()}
                width={slot.saturating_sub(2).max(1).to_string()}
                height={(HEIGHT - top).to_string()}>
                <title>{ format!("{} / {}", p.messages, p.sessions) }</title>
            </rect>
        }
    });
    let points = series
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{},{}", i as u64 * slot + slot / 2, y(p.sessions)))
        .collect::<Vec<_>>()
        .join(" ");
    let total: u64 = series.iter().map(|p| p.messages).sum();
    html! {
        <figure class="chart">
            <svg id="throughput" data-testid="throughput-chart" data-total={total.to_string()}
                viewBox={format!("0 0 {WIDTH} {HEIGHT}")} preserveAspectRatio="none"
                role="img" aria-label={s.chart_title}>
                <line class="axis" x1="0" y1={HEIGHT.to_string()} x2={WIDTH.to_string()} y2={HEIGHT.to_string()} />
                { for bars }
                <polyline class="sessions-line" points={points} />
            </svg>
            <figcaption>
                <span class="legend legend-messages">{ s.chart_title }</span>
                <span class="legend legend-sessions">{ s.counter_sessions_total }</span>
                <span class="muted">{ caption }</span>
            </figcaption>
        </figure>
    }
}
