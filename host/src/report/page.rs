//! The page: one HTML document, well-formed XML too, with everything inline (styles, the SVG
//! timelines, one line of script that marks the page as loaded) and a Content-Security-Policy
//! that forbids every load from elsewhere, so a report opened from a mail or a shared drive
//! fetches nothing. Every element a reader (or a test) looks for has a stable `id` and `data-*`
//! attributes: the run (`#run`, `#totals`), each story (`section.story[data-story]`), each step
//! (`#step-N` in the table, `#tl-N` on the timeline, N the journal's step id), each round
//! (`#round-N`) and its findings (`li.finding`).

use std::fmt::Write;
use std::path::Path;
use std::time::SystemTime;

use super::escape::{Esc, cut};
use super::figures::{clock, count, money, stamp, tokens_text};
use super::model::{HostState, Item, ItemKind, ItemState, Lane, RunView, StoryView, span};
use super::swimlane;

/// Longest detail shown for one step, in characters (a finding is always shown whole, in its
/// round).
const DETAIL_CHARS: usize = 600;

const STYLE: &str = "
:root{--ok:#2e8b57;--bad:#c0392b;--limit:#8e44ad;--open:#d68910;--ink:#1d2330;--mute:#667085;--line:#e4e7ec}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);margin:0;background:#f7f8fa}
main{max-width:1000px;margin:0 auto;padding:20px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:0 0 6px}h3{font-size:14px;margin:10px 0 4px}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{white-space:pre-wrap;word-break:break-word;margin:0}
.meta{color:var(--mute);margin:0 0 12px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:0 0 16px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px 3px 0;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--mute);font-weight:600;font-size:12px}
td.n,th.n{text-align:right;white-space:nowrap}
td{white-space:nowrap}td.what{white-space:normal}
.pill{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;color:#fff;background:var(--mute)}
.r-done{background:var(--ok)}.r-failed{background:var(--bad)}.r-escalated{background:var(--limit)}.r-running,.r-interrupted{background:var(--open)}
.figures{display:flex;flex-wrap:wrap;gap:18px;margin:8px 0 0}
.figures div{min-width:90px}.figures b{display:block;font-size:18px}
.figures span{color:var(--mute);font-size:12px}
svg.lanes{width:100%;height:auto;display:block;margin:8px 0}
svg .band{fill:#fff}svg g.lane:nth-child(odd) .band{fill:#f2f4f7}
svg .role{font-size:11px;fill:var(--mute)}svg .axis{font-size:10px;fill:var(--mute)}
svg .tick{stroke:var(--line)}svg .badge{font-size:9px;fill:var(--ink)}
svg .s-ok{fill:var(--ok)}svg .s-failed{fill:var(--bad)}svg .s-usage-limit{fill:var(--limit)}
svg .s-interrupted,svg .s-open{fill:url(#hatch);stroke:var(--open)}
svg .unclean{stroke:var(--bad);stroke-width:2}
svg .gates.s-ok{fill:#5dade2}
svg .span-label{font-size:10px;fill:#fff;pointer-events:none}
svg .wait{stroke:var(--limit);stroke-width:2;stroke-dasharray:4 3}svg .wait-label{font-size:9px;fill:var(--limit)}
tr.earlier td{color:var(--mute)}
svg .teardown{stroke:var(--bad);stroke-width:2;fill:none}
svg .send-back{fill:var(--open)}svg .escalate{fill:var(--limit)}svg .fail{fill:var(--bad)}
.steps td.what{width:45%}
.st-ok{color:var(--ok)}.st-failed,.st-unclean{color:var(--bad)}.st-usage-limit{color:var(--limit)}.st-interrupted,.st-open{color:var(--open)}
.round{border-left:3px solid var(--open);padding:2px 0 2px 10px;margin:6px 0}
.round ol{margin:2px 0;padding-left:20px}
.legend span{margin-right:14px;color:var(--mute);font-size:12px}
.legend i{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
a{color:#1f5fbf}
footer{color:var(--mute);font-size:12px;margin:20px 0}
";

/// The page of `view`; `href` makes a transcript's link.
pub(super) fn write(view: &RunView, href: &dyn Fn(&Path) -> String) -> String {
    let mut out = String::with_capacity(16 * 1024 + view.stories.len() * 8 * 1024);
    let id = view.id.as_str();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\
         <meta charset=\"utf-8\"/>\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\"/>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\
         <title>bmad-host run {id}</title><style>{STYLE}</style></head>\n<body>\
         <svg width=\"0\" height=\"0\" style=\"position:absolute\" aria-hidden=\"true\">\
         <defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#fdebd0\"/>\
         <rect width=\"3\" height=\"6\" fill=\"#d68910\"/></pattern></defs></svg>\n<main>"
    );
    header(&mut out, view);
    index(&mut out, view);
    let bound = view.finished_at.unwrap_or(view.read_at);
    if !view.lanes.is_empty() {
        let _ = write!(
            out,
            "<section class=\"card\" id=\"lanes\" data-lanes=\"{}\"><h2>Lanes</h2>\
             <p class=\"meta\">The stories side by side: each lane's row shows the stories it \
             drove in their worktrees, the integration lane's the integrations, one at a time.</p>",
            view.lanes.len()
        );
        swimlane::draw_lanes(&mut out, &view.lanes, bound);
        out.push_str("</section>");
    }
    for (n, story) in view.stories.iter().enumerate() {
        story_section(&mut out, n, story, bound, href);
    }
    let _ = write!(
        out,
        "<footer>Written by bmad-host {} from the journal at {} (UTC). Times are when the \
         journal recorded each step's intent and result.</footer>\n</main>\n\
         <script>document.documentElement.setAttribute('data-report-ready', 'yes');</script>\n\
         </body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        Esc(&stamp(view.read_at))
    );
    out
}

fn header(out: &mut String, view: &RunView) {
    let t = &view.totals;
    let u = &t.usage;
    let status = view.status.as_str();
    let _ = write!(
        out,
        "<section class=\"card\" id=\"run\" data-run=\"{id}\" data-status=\"{status}\" \
         data-host=\"{host}\" data-started=\"{started}\"{finished}>\
         <h1>Run <code>{id}</code> <span class=\"pill r-{status}\">{status}</span></h1>\
         <p class=\"meta\">started {started}{finished_text}{live}</p>",
        id = Esc(view.id.as_str()),
        host = match view.host {
            HostState::Ended => "ended",
            HostState::Running => "running",
            HostState::Gone => "gone",
            HostState::Unknown => "unknown",
        },
        started = stamp(view.started_at),
        finished = view
            .finished_at
            .map(|f| format!(" data-finished=\"{}\"", stamp(f)))
            .unwrap_or_default(),
        finished_text = view
            .finished_at
            .map(|f| format!(", finished {}", stamp(f)))
            .unwrap_or_default(),
        live = match view.host {
            HostState::Ended => String::new(),
            HostState::Running => format!("; running: read at {}", stamp(view.read_at)),
            HostState::Gone => "; its host is gone (killed or crashed): the next `bmad-host run` \
                 resumes it"
                .to_owned(),
            HostState::Unknown => format!(
                "; still running, or its host died: read at {}",
                stamp(view.read_at)
            ),
        },
    );
    let tokens = u.input_tokens.saturating_add(u.output_tokens);
    let _ = write!(
        out,
        "<div class=\"figures\" id=\"totals\" data-stories=\"{}\" data-done=\"{}\" \
         data-failed=\"{}\" data-escalated=\"{}\" data-calls=\"{}\" data-open-calls=\"{}\" \
         data-retried=\"{}\" data-cost-usd=\"{:.6}\" data-turns=\"{}\" data-input-tokens=\"{}\" \
         data-output-tokens=\"{}\" data-duration-ms=\"{}\">",
        t.stories,
        t.done,
        t.failed,
        t.escalated,
        t.calls,
        t.open_calls,
        t.retried,
        u.cost_usd,
        u.turns,
        u.input_tokens,
        u.output_tokens,
        u.duration.as_millis()
    );
    let figure = |out: &mut String, value: String, label: &str| {
        let _ = write!(out, "<div><b>{}</b><span>{label}</span></div>", Esc(&value));
    };
    figure(out, format!("{}/{}", t.done, t.stories), "stories done");
    figure(out, t.failed.to_string(), "failed");
    figure(out, t.escalated.to_string(), "escalated");
    figure(out, t.calls.to_string(), "agent calls");
    if t.open_calls > 0 {
        figure(out, t.open_calls.to_string(), "without a result");
    }
    if t.retried > 0 {
        figure(out, t.retried.to_string(), "steps redone");
    }
    figure(out, money(u.cost_usd), "API-equivalent");
    if tokens > 0 {
        figure(out, count(tokens), "tokens");
    }
    figure(out, u.turns.to_string(), "turns");
    figure(out, clock(u.duration), "in calls and gates");
    out.push_str("</div>");
    if !view.args.is_empty() {
        let _ = write!(
            out,
            "<p class=\"meta\">command: <code>{}</code></p>",
            Esc(&view.args.join(" "))
        );
    }
    if !view.plugins.is_empty() {
        let plugins: Vec<String> = view
            .plugins
            .iter()
            .map(|p| format!("{} {} ({})", p.name, p.version, p.role))
            .collect();
        let _ = write!(
            out,
            "<p class=\"meta\">plugins: {}</p>",
            Esc(&plugins.join(", "))
        );
    }
    out.push_str(
        "<p class=\"legend\"><span><i style=\"background:#2e8b57\"></i>success</span>\
         <span><i style=\"background:#5dade2\"></i>gates passed</span>\
         <span><i style=\"background:#c0392b\"></i>failed</span>\
         <span><i style=\"background:#8e44ad\"></i>usage limit / escalated</span>\
         <span><i style=\"background:#d68910\"></i>interrupted, no result / sent back</span>\
         <span>a2: attempt 2 (redone after an interruption)</span>\
         <span>r1: one transient failure retried</span>\
         <span>✕: end not proven</span></p></section>",
    );
}

fn index(out: &mut String, view: &RunView) {
    out.push_str(
        "<section class=\"card\" id=\"stories\"><h2>Stories</h2><table><thead><tr><th>story</th>\
         <th>title</th><th>result</th><th class=\"n\">cycles</th><th class=\"n\">calls</th>\
         <th class=\"n\">cost</th><th class=\"n\">tokens</th><th class=\"n\">turns</th>\
         <th class=\"n\">time</th></tr></thead><tbody>",
    );
    for (n, s) in view.stories.iter().enumerate() {
        let calls = s
            .items
            .iter()
            .filter(|i| i.kind == ItemKind::AgentCall)
            .count();
        let result = s.result.as_deref().unwrap_or("unfinished");
        let _ = write!(
            out,
            "<tr data-story=\"{id}\"><td><a href=\"#story-{n}\">{id}</a></td><td>{title}</td>\
             <td><span class=\"pill r-{result}\">{result}</span></td><td class=\"n\">{}</td>\
             <td class=\"n\">{calls}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            s.cycles,
            money(s.usage.cost_usd),
            tokens_text(s.usage.input_tokens, s.usage.output_tokens),
            s.usage.turns,
            clock(s.usage.duration),
            id = Esc(&s.id),
            title = Esc(&s.title),
        );
    }
    out.push_str("</tbody></table></section>");
}

fn story_section(
    out: &mut String,
    n: usize,
    s: &StoryView,
    bound: SystemTime,
    href: &dyn Fn(&Path) -> String,
) {
    let result = s.result.as_deref().unwrap_or("unfinished");
    let _ = write!(
        out,
        "<section class=\"card story\" id=\"story-{n}\" data-story=\"{id}\" data-result=\"{result}\" \
         data-state=\"{state}\" data-cycles=\"{}\" data-cost-usd=\"{:.6}\" data-turns=\"{}\" \
         data-input-tokens=\"{}\" data-output-tokens=\"{}\" data-duration-ms=\"{}\">\
         <h2>{id} <span class=\"title\">{title}</span> <span class=\"pill r-{result}\">{result}</span></h2>\
         <p class=\"meta\">{state_text}cycle {} · {} · {} turns{tokens} · {}{last}</p>",
        s.cycles,
        s.usage.cost_usd,
        s.usage.turns,
        s.usage.input_tokens,
        s.usage.output_tokens,
        s.usage.duration.as_millis(),
        s.cycles,
        money(s.usage.cost_usd),
        s.usage.turns,
        clock(s.usage.duration),
        id = Esc(&s.id),
        title = Esc(&s.title),
        state = Esc(s.state.as_deref().unwrap_or("")),
        state_text = s
            .state
            .as_deref()
            .map(|st| format!("state {} · ", Esc(st)))
            .unwrap_or_default(),
        tokens = match tokens_text(s.usage.input_tokens, s.usage.output_tokens) {
            t if t == "–" => String::new(),
            t => format!(" · {t} tokens"),
        },
        last = s
            .last_outcome
            .as_deref()
            .map(|l| format!(" · last: {}", Esc(l)))
            .unwrap_or_default(),
    );
    swimlane::draw(out, s, bound);
    steps_table(out, s, href);
    rounds(out, s);
    spend(out, s);
    out.push_str("</section>\n");
}

fn steps_table(out: &mut String, s: &StoryView, href: &dyn Fn(&Path) -> String) {
    if s.items.is_empty() {
        out.push_str("<p class=\"meta\">No step journaled.</p>");
        return;
    }
    out.push_str(
        "<table class=\"steps\"><thead><tr><th>start</th><th>role</th><th>step</th>\
         <th class=\"n\">cycle</th><th class=\"n\">time</th><th>outcome</th><th class=\"n\">cost</th>\
         <th class=\"n\">turns</th><th class=\"what\">detail</th><th>transcript</th></tr></thead><tbody>",
    );
    for item in &s.items {
        step_row(out, item, href);
    }
    out.push_str("</tbody></table>");
}

fn step_row(out: &mut String, item: &Item, href: &dyn Fn(&Path) -> String) {
    let end_attr = item
        .end
        .map(|e| format!(" data-end=\"{}\"", stamp(e)))
        .unwrap_or_default();
    let time = if item.kind.is_marker() {
        String::new()
    } else {
        match item.end {
            Some(_) => clock(span(item)),
            None => "–".to_owned(),
        }
    };
    let mut outcome = Esc(&item.outcome).to_string();
    if item.attempt > 1 {
        outcome.push_str(&format!(" · attempt {}", item.attempt));
    }
    if item.processes > 1 {
        outcome.push_str(&format!(" · {} processes", item.processes));
    }
    if !item.clean && item.kind != ItemKind::Teardown {
        outcome.push_str(" · <span class=\"st-unclean\">end not proven</span>");
    }
    let links: Vec<String> = item
        .transcripts
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let label = if item.transcripts.len() > 1 {
                format!("{}", k + 1)
            } else {
                "jsonl".to_owned()
            };
            format!(
                "<a class=\"transcript\" href=\"{}\" title=\"{}\">{label}</a>",
                Esc(&href(p)),
                Esc(&name)
            )
        })
        .collect();
    let _ = write!(
        out,
        "<tr id=\"step-{step}\" data-step=\"{step}\" data-kind=\"{kind}\" data-lane=\"{lane}\" \
         data-cycle=\"{cycle}\" data-attempt=\"{attempt}\" data-state=\"{state}\" \
         data-start=\"{start}\"{end_attr}{cost_attr}>\
         <td>{clock_time}</td><td>{lane}</td><td>{kind}</td><td class=\"n\">{cycle}</td>\
         <td class=\"n\">{time}</td><td class=\"st-{state}\">{outcome}</td><td class=\"n\">{cost}</td>\
         <td class=\"n\">{turns}</td><td class=\"what\"><pre>{detail}</pre></td><td>{links}</td></tr>",
        step = item.step,
        kind = item.kind.name(),
        lane = item.lane.name(),
        cycle = item.cycle,
        attempt = item.attempt,
        state = item.state.name(),
        start = stamp(item.start),
        cost_attr = item
            .cost_usd
            .map(|c| format!(" data-cost-usd=\"{c:.6}\""))
            .unwrap_or_default(),
        clock_time = Esc(&stamp(item.start)[11..19]),
        cost = item.cost_usd.map(money).unwrap_or_default(),
        turns = item.turns.map(|t| t.to_string()).unwrap_or_default(),
        detail = Esc(&if item.kind == ItemKind::SendBack {
            format!("the findings are under Rounds (cycle {})", item.cycle)
        } else {
            cut(&item.detail, DETAIL_CHARS)
        }),
        links = links.join(" "),
    );
    for a in &item.earlier {
        let outcome = match a.outcome.as_deref() {
            Some("usage-limit") => "usage limit; redone after the wait".to_owned(),
            Some("cancelled") => "interrupted (Ctrl-C); redone on resume".to_owned(),
            Some(other) => format!("{other}; redone"),
            None => "cut off (the host was stopped); redone on resume".to_owned(),
        };
        let state = match a.outcome.as_deref() {
            Some("usage-limit") => ItemState::Limited,
            _ => ItemState::Interrupted,
        };
        let when = a
            .start
            .map(|t| stamp(t)[11..19].to_owned())
            .unwrap_or_default();
        let took = a
            .start
            .zip(a.end)
            .and_then(|(s, e)| e.duration_since(s).ok())
            .map(clock)
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr class=\"earlier\" id=\"step-{step}-a{n}\" data-step=\"{step}\" data-attempt=\"{n}\" \
             data-state=\"{state}\" data-outcome=\"{raw}\"><td>{when}</td><td>{lane}</td>\
             <td>attempt {n}</td><td class=\"n\">{cycle}</td><td class=\"n\">{took}</td>\
             <td class=\"st-{state}\">{outcome}</td><td></td><td></td><td class=\"what\"></td>\
             <td><a class=\"transcript\" href=\"{href}\">{n}</a></td></tr>",
            step = item.step,
            n = a.n,
            state = state.name(),
            raw = Esc(a.outcome.as_deref().unwrap_or("none")),
            lane = item.lane.name(),
            cycle = item.cycle,
            outcome = Esc(&outcome),
            href = Esc(&href(&a.transcript)),
        );
    }
}

fn rounds(out: &mut String, s: &StoryView) {
    if s.rounds.is_empty() {
        return;
    }
    out.push_str("<h3>Rounds</h3>");
    for r in &s.rounds {
        let by = match r.lane {
            Lane::Qa => "review",
            Lane::Dev | Lane::Gates => "the gates (Dev's policy)",
            Lane::Sm => "SM's policy",
        };
        let _ = write!(
            out,
            "<div class=\"round\" id=\"round-{step}\" data-step=\"{step}\" data-cycle=\"{cycle}\" \
             data-by=\"{lane}\" data-at=\"{at}\"><b>cycle {cycle}</b>: sent back by {by} with \
             {n} finding{s}<ol>",
            step = r.step,
            cycle = r.cycle,
            lane = r.lane.name(),
            at = stamp(r.at),
            n = r.findings.len(),
            s = if r.findings.len() == 1 { "" } else { "s" },
        );
        for f in &r.findings {
            let _ = write!(out, "<li class=\"finding\"><pre>{}</pre></li>", Esc(f));
        }
        out.push_str("</ol></div>");
    }
}

fn spend(out: &mut String, s: &StoryView) {
    if s.roles.is_empty() {
        return;
    }
    out.push_str(
        "<h3>Spend by role</h3><table class=\"spend\"><thead><tr><th>role</th>\
         <th class=\"n\">calls</th><th class=\"n\">cost</th><th class=\"n\">tokens</th>\
         <th class=\"n\">turns</th><th class=\"n\">time</th></tr></thead><tbody>",
    );
    for (lane, r) in &s.roles {
        let (ti, to) = r.tokens.unwrap_or((0, 0));
        let _ = write!(
            out,
            "<tr data-lane=\"{lane}\" data-calls=\"{calls}\" data-cost-usd=\"{cost:.6}\" \
             data-turns=\"{turns}\" data-duration-ms=\"{ms}\"><td>{lane}</td><td class=\"n\">{calls}</td>\
             <td class=\"n\">{money}</td><td class=\"n\">{tokens}</td><td class=\"n\">{turns}</td>\
             <td class=\"n\">{clock}</td></tr>",
            lane = lane.name(),
            calls = r.calls,
            cost = r.cost_usd,
            turns = r.turns,
            ms = r.duration.as_millis(),
            money = if *lane == Lane::Gates {
                "–".to_owned()
            } else {
                money(r.cost_usd)
            },
            tokens = tokens_text(ti, to),
            clock = clock(r.duration),
        );
    }
    out.push_str("</tbody></table>");
}
