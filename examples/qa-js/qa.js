// qa-js: the default QA policy's rules, written in JavaScript.
//
// It implements the `agent-policy` world of sdk/wit/policy.wit (bmad:policy@0.2.0) and is built into
// a WebAssembly component by `cargo xtask build-js-plugin` (jco componentize). It follows the Rust
// `qa` plugin (sdk/src/qa.rs, QaRules::LENIENT):
//
// - begin: invoke the agent with the QA prompt (v4 review-story + qa-gate, v6 code-review).
// - on-event: always continue.
// - end: not a success -> fail. A QA gate file: PASS / WAIVED / CONCERNS -> set-state(done)
//   (complete when the file already says done); FAIL -> send-back with the gate's top_issues
//   (else the story's unchecked QA Results items, else the gate's status_reason); another value
//   -> escalate. No gate file: decide from the parsed status (done -> complete; in-progress or
//   changes-requested -> send-back with the open review action items; review -> fail).
//   A send-back with no fewer findings than the previous round escalates instead.
//
// WIT values in JS (jco's mapping): records are objects with camelCase fields; enums are their
// kebab-case names as strings ('ready-for-dev'); variants are { tag, val }; option<T> is the value
// or undefined; u32 is a number, u64 a BigInt; list<u32> a Uint32Array, list<string> an array.

import { log } from 'bmad:policy/host@0.2.0';

const MAX_FINDINGS = 100;
const MAX_FINDING_CHARS = 600;
// How a failed quality gate's finding starts (the Dev policy's wording).
const GATE_FINDING_PREFIX = 'quality gate `';

const SYSTEM_PROMPT =
  'You are running headless under bmad-host, an orchestrator that drives a BMAD project story by ' +
  'story. No person is watching this session: never wait for input, never ask for confirmation, ' +
  'and never stop at a menu. Where a BMAD task or workflow would halt to ask the user, take the ' +
  "choice the orchestrator's prompt names, or else the choice that keeps the work going without " +
  "losing anything, and note the decision in the story's log section. Work only on the story you " +
  'are given.';

// ---------------------------------------------------------------------------------------------
// The world's exports

export function begin(story, _document) {
  return {
    tag: 'invoke-agent',
    val: {
      prompt: qaPrompt(story),
      maxTurns: undefined,
      allowedTools: [],
      model: undefined,
      appendSystemPrompt: SYSTEM_PROMPT,
    },
  };
}

export function onEvent(_story, _event) {
  return 'continue';
}

export function end(story, report) {
  const outcome = report.outcome;
  if (outcome === undefined) {
    return fail('QA policy got a gates report, but QA never asks for gates');
  }
  if (outcome.kind !== 'success') {
    return fail(`QA agent call ended with ${outcome.kind}: ${clip(outcome.message.trim(), 400)}`);
  }
  const gate = report.qaGate;
  if (gate !== undefined) {
    const verdict = parseVerdict(gate.gate);
    log('debug', `qa-js: story ${story.id}: gate \`${gate.path}\` says ${verdict}`);
    switch (verdict) {
      case 'PASS':
      case 'WAIVED':
      case 'CONCERNS':
        return done(report);
      case 'FAIL': {
        let findings = gateIssues(gate.text);
        if (findings.length === 0) findings = qaResultsItems(report.document);
        if (findings.length === 0) {
          const reason = gateField(gate.text, 'status_reason');
          if (reason !== undefined) findings.push(clip(reason, MAX_FINDING_CHARS));
        }
        if (findings.length === 0) {
          findings.push(`QA gate FAIL in \`${gate.path}\`: see the story's QA Results`);
        }
        return sendBack(story, findings);
      }
      default:
        return {
          tag: 'escalate',
          val: `QA gate \`${gate.path}\` has the decision ${JSON.stringify(verdict)}, not PASS, CONCERNS, FAIL or WAIVED`,
        };
    }
  }
  switch (stateOf(report.status)) {
    case 'done':
      return done(report);
    case 'in-progress':
    case 'changes-requested': {
      const findings = reviewActionItems(report.document);
      if (findings.length === 0) {
        findings.push(
          `the code review set the story to ${describe(report.status)} without open action items: ` +
            `see its review section in \`${story.path}\``,
        );
      }
      return sendBack(story, findings);
    }
    case 'review':
      return fail('QA left the story in review without a gate decision');
    default: {
      const missing = story.gatePath === '' ? '' : ` (no \`${story.gatePath}\`)`;
      return fail(
        `QA finished without a gate decision${missing}; the story status is ${describe(report.status)}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decisions

function fail(reason) {
  return { tag: 'fail', val: reason };
}

// The story passed review: set it done, or complete when the file already says done.
function done(report) {
  if (stateOf(report.status) === 'done') return { tag: 'complete' };
  return { tag: 'set-state', val: 'done' };
}

// Sends the findings back, or escalates when review does not converge: an earlier send-back
// exists and this one has no fewer findings (unless the previous one was the quality gates').
function sendBack(story, findings) {
  const count = findings.length;
  const previous = story.previousFindings;
  const afterGates =
    previous.length > 0 && previous.every((f) => f.startsWith(GATE_FINDING_PREFIX));
  const history = story.findingsHistory;
  if (history.length > 0 && !afterGates) {
    const last = Number(history[history.length - 1]);
    if (count >= last) {
      return {
        tag: 'escalate',
        val: `review is not converging: ${count} findings after ${history.length + 1} rounds (previous round: ${last})`,
      };
    }
  }
  return { tag: 'send-back', val: findings.slice(0, MAX_FINDINGS) };
}

// ---------------------------------------------------------------------------------------------
// The parsed status

// The state to act on: a found value's state only.
function stateOf(status) {
  return status.tag === 'found' ? status.val.state : undefined;
}

function describe(status) {
  const v = status.val;
  switch (status.tag) {
    case 'found':
      return v.state === undefined ? JSON.stringify(v.raw) : `${v.state} (${JSON.stringify(v.raw)})`;
    case 'doubtful':
      return v.state === undefined
        ? `unknown ${JSON.stringify(v.raw)}`
        : `doubtful ${JSON.stringify(v.raw)} (${v.state}?)`;
    case 'conflict':
      return `conflict: ${v.map((x) => JSON.stringify(x.raw)).join(' / ')}`;
    case 'missing':
      switch (v.tag) {
        case 'empty-value':
          return `missing (empty value at line ${v.val})`;
        case 'empty-file':
          return 'missing (empty file)';
        case 'not-text':
          return 'missing (not text)';
        default:
          return 'missing (no status)';
      }
    default:
      return String(status.tag);
  }
}

// ---------------------------------------------------------------------------------------------
// Findings: the QA gate file and the story document

// At most `max` UTF-16 units of `text`, the cut marked with `…` and never inside a surrogate pair.
// (Not `Array.from(text)`: the string iterator runs in SpiderMonkey's interpreter, and costs
// about a million instructions of fuel per short string.)
function clip(text, max) {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? max - 1 : max;
  return `${text.slice(0, end)}…`;
}

function parseVerdict(value) {
  const v = value.trim().replace(/^["']+|["']+$/g, '').trim();
  const upper = v.toUpperCase();
  return ['PASS', 'CONCERNS', 'FAIL', 'WAIVED'].includes(upper) ? upper : v;
}

function unquote(value) {
  const v = value.trim();
  for (const q of ['"', "'"]) {
    if (v.length >= 2 && v.startsWith(q) && v.endsWith(q)) return v.slice(1, -1).trim();
  }
  return v;
}

// A top-level `key: value` of a gate file.
function gateField(text, key) {
  for (const line of text.split('\n')) {
    if (!line.startsWith(key)) continue;
    const rest = line.slice(key.length).trimStart();
    if (!rest.startsWith(':')) continue;
    const v = unquote(rest.slice(1));
    if (v !== '') return v;
  }
  return undefined;
}

// The gate's `top_issues`, one finding each: `severity: finding (suggested: action)`.
function gateIssues(text) {
  const issues = [];
  let inside = false;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (!inside) {
      inside = line.trimEnd() === 'top_issues:';
      continue;
    }
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (!/^[ \t-]/.test(line)) break;
    let item = trimmed;
    if (trimmed.startsWith('-')) {
      issues.push({});
      item = trimmed.slice(1).trimStart();
    }
    const current = issues[issues.length - 1];
    const colon = item.indexOf(':');
    if (current === undefined || colon < 0) continue;
    const key = item.slice(0, colon).trim();
    const value = unquote(item.slice(colon + 1));
    if (key === 'severity') current.severity = value;
    else if (key === 'finding' || key === 'issue') current.finding = value;
    else if (key === 'suggested_action') current.action = value;
  }
  return issues
    .filter((i) => i.finding)
    .map((i) => {
      let s = i.severity ? `${i.severity}: ${i.finding}` : i.finding;
      if (i.action) s += ` (suggested: ${i.action})`;
      return clip(s, MAX_FINDING_CHARS);
    });
}

// Every checkbox of a markdown document outside code fences, with its enclosing headings
// (lowercased, one per line, in `headings`). Each regular expression runs only on the lines
// that can match it: the engine is an interpreter, and fuel is counted per instruction.
function checkboxes(doc) {
  const out = [];
  const stack = [];
  let headings = '';
  let fence = null;
  for (const line of doc.split('\n')) {
    const t = line.trimStart();
    const first = t.charAt(0);
    const fm = first === '`' || first === '~' ? /^(`{3,}|~{3,})/.exec(t) : null;
    if (fence !== null) {
      if (fm && fm[1][0] === fence[0] && fm[1].length >= fence.length && t.slice(fm[1].length).trim() === '') {
        fence = null;
      }
      continue;
    }
    if (fm) {
      fence = fm[1];
      continue;
    }
    const h = first === '#' ? /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$/.exec(line) : null;
    if (h) {
      const level = h[1].length;
      while (stack.length > 0 && stack[stack.length - 1].level >= level) stack.pop();
      stack.push({ level, text: (h[2] || '').trim().toLowerCase() });
      headings = stack.map((s) => s.text).join('\n');
      continue;
    }
    const c = t.includes('[') ? /^(?:[-*+]|\d+[.)])[ \t]+\[([ xX])\](.*)$/.exec(t) : null;
    if (c) out.push({ checked: c[1] !== ' ', text: c[2].trim(), headings });
  }
  return out;
}

// Whether one of the box's headings contains `needle` (lowercase, no line break).
const under = (box, needle) => box.headings.includes(needle);
const containsCi = (text, needle) => text.toLowerCase().includes(needle.toLowerCase());

// Unchecked items of the story's `QA Results` section, except those marked as future work.
function qaResultsItems(doc) {
  return checkboxes(doc)
    .filter((b) => !b.checked && under(b, 'qa results') && !containsCi(b.text, 'future'))
    .map((b) => clip(b.text, MAX_FINDING_CHARS));
}

// Open code-review action items (v6 code-review), in document order.
function reviewActionItems(doc) {
  return checkboxes(doc)
    .filter((b) => {
      if (b.checked || containsCi(b.text, '[Defer]')) return false;
      return containsCi(b.text, '[AI-Review]') || containsCi(b.text, '[Review]') || under(b, 'review');
    })
    .map((b) => clip(b.text, MAX_FINDING_CHARS));
}

// ---------------------------------------------------------------------------------------------
// The QA prompt (the Rust policy SDK's wording: sdk/src/prompt.rs)

function context(story) {
  const lines = [];
  const title = story.title === '' ? '' : ` "${story.title}"`;
  lines.push(`Story: ${story.id}${title} (epic ${story.epic})`);
  lines.push(`Story file: \`${story.path}\``);
  if (story.epicPath !== '') lines.push(`Epic file: \`${story.epicPath}\``);
  if (story.sprintStatusPath !== '') lines.push(`Sprint status: \`${story.sprintStatusPath}\``);
  lines.push(story.maxCycles > 0 ? `Cycle: ${story.cycle} of ${story.maxCycles}` : `Cycle: ${story.cycle}`);
  if (story.rawStatus !== undefined) lines.push(`Current status in the file: ${story.rawStatus}`);
  let s = `${lines.join('\n')}\n`;
  if (story.retry) {
    s +=
      '\nThe previous attempt at this step was interrupted before it finished. Files, the story ' +
      'file included, may be half-edited: check the story file and the working tree (git status, ' +
      'git diff) first, keep what is sound, repair what is broken, and finish the step rather ' +
      'than starting over.\n';
  }
  if (story.previousFindings.length > 0) {
    const when = story.retry && story.cycle <= 1 ? 'the previous attempt' : 'the previous cycle';
    s += `\nWhat failed in ${when} (address every item):\n`;
    for (const f of story.previousFindings) s += `- ${f.replace(/\n/g, '\n  ')}\n`;
  } else if (story.cycle > 1) {
    s +=
      '\nA review sent this story back in the previous cycle: its findings are recorded in the ' +
      'story file (QA Results / review sections) and, for v4, in the QA gate file.\n';
  }
  return s;
}

function qaPrompt(story) {
  let p = `${context(story)}\n`;
  const rereview = story.cycle > 1;
  if (story.layout === 'v4') {
    const gate =
      story.gatePath === ''
        ? 'in the `qa.qaLocation` gates folder of `.bmad-core/core-config.yaml`'
        : `exactly at \`${story.gatePath}\` (create the folder if needed)`;
    p +=
      'Act as the BMAD Test Architect: read `.bmad-core/agents/qa.md` and adopt that persona. ' +
      `Run \`*review ${story.id}\`: the task \`.bmad-core/tasks/review-story.md\` on \`${story.path}\`. ` +
      'Review the code and the tests against every acceptance criterion, and write your results ' +
      "only into the story's `QA Results` section.\n\n" +
      `Then record the gate decision with the task \`.bmad-core/tasks/qa-gate.md\`: write the gate file ${gate}, ` +
      'with `gate:` one of PASS, CONCERNS, FAIL or WAIVED, a `status_reason`, and each issue under ' +
      '`top_issues` with `id`, `severity`, `finding` and `suggested_action`. Use FAIL for a missing ' +
      'acceptance criterion or a high-severity issue.\n\n' +
      "Do NOT change the story's Status: the orchestrator sets it from your gate decision. Do not " +
      'edit the other sections of the story.\n';
    if (rereview) {
      p +=
        '\nThis is a re-review after Dev addressed the findings listed above: check each of them, ' +
        'overwrite the gate with the new decision, and append an entry to its `history`.\n';
    }
  } else {
    const sprint = story.sprintStatusPath === '' ? '' : ` and in \`${story.sprintStatusPath}\``;
    p +=
      'Run the BMAD `code-review` workflow: read `_bmad/core/tasks/workflow.xml` completely and ' +
      'follow it exactly with workflow-config `_bmad/bmm/workflows/4-implementation/code-review/workflow.yaml`. ' +
      'If that file does not exist in this installation, use the installed `bmad-code-review` skill ' +
      '(or command) instead. Run it in #yolo mode: skip optional confirmations and elicitation.\n\n' +
      `Review exactly the story in \`${story.path}\`.\n\n` +
      "Nobody will answer the workflow's menu. When it asks what to do with the issues it found, " +
      "choose \"Create action items\": add each issue to the story's Tasks / Subtasks under " +
      '`Review Follow-ups (AI)` as an unchecked `- [ ] [AI-Review][Severity] description [file:line]` ' +
      'item (or, in a version that records `### Review Findings` with `[Review][...]` items, keep ' +
      'those unchecked the same way). Do not fix the code yourself.\n\n' +
      `Then set the status yourself, in the story file (\`Status:\` line)${sprint}: \`done\` if every ` +
      'acceptance criterion is implemented and no HIGH or MEDIUM issue is open, otherwise ' +
      '`in-progress`. Never leave the story in `review`.\n';
    if (rereview) {
      p +=
        '\nThis is a re-review after Dev addressed the findings listed above: check each of them ' +
        'and do not re-open items that are fixed.\n';
    }
  }
  return p;
}
