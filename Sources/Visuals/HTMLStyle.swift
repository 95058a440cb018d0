/// The report's style sheet, inlined into every report. System fonts only; no `<`, `&` or
/// `url(…)` in it, so it stays valid XML text and references nothing outside the file.
enum HTMLStyle {
    static let css = """
        :root {
          color-scheme: light;
          --ink: #1d1f23;
          --muted: #5d6470;
          --line: #e2e4e8;
          --soft: #f5f6f8;
          --accent: #0072b2;
          --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
        }
        * { box-sizing: border-box; }
        html { background: #eef0f3; }
        body {
          margin: 0;
          color: var(--ink);
          font: 16px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
          -webkit-font-smoothing: antialiased;
          text-rendering: optimizeLegibility;
        }
        main {
          max-width: 1000px;
          margin: 0 auto;
          padding: 56px 48px 40px;
          background: #ffffff;
          min-height: 100vh;
        }
        .report-header h1 {
          font-size: 2.4rem;
          line-height: 1.15;
          letter-spacing: -0.015em;
          margin: 0 0 0.4rem;
        }
        .subtitle { margin: 0; font-size: 1.2rem; color: var(--muted); }
        nav.toc {
          margin: 2rem 0 0;
          padding: 1rem 1.5rem;
          background: var(--soft);
          border-radius: 10px;
        }
        .toc-title {
          margin: 0 0 0.4rem;
          font-size: 0.8rem;
          text-transform: uppercase;
          letter-spacing: 0.08em;
          color: var(--muted);
          border: 0;
          padding: 0;
        }
        nav.toc ol { margin: 0; padding-left: 1.4rem; columns: 2; column-gap: 2.5rem; }
        nav.toc li { padding: 0.1rem 0; break-inside: avoid; }
        nav.toc a { color: var(--ink); text-decoration: none; border-bottom: 1px solid var(--line); }
        nav.toc a:hover { color: var(--accent); border-color: var(--accent); }
        section { margin-top: 3.5rem; }
        h2 {
          font-size: 1.65rem;
          line-height: 1.25;
          letter-spacing: -0.01em;
          margin: 0 0 0.8rem;
          padding-bottom: 0.5rem;
          border-bottom: 1px solid var(--line);
        }
        .section-number { color: var(--accent); margin-right: 0.55em; font-variant-numeric: tabular-nums; }
        h3 { font-size: 1.15rem; margin: 2.2rem 0 0.6rem; }
        p { margin: 0.7rem 0; max-width: 46em; }
        p.intro { font-size: 1.1rem; color: #343a43; }
        code {
          font-family: var(--mono);
          font-size: 0.88em;
          background: #f0f1f4;
          padding: 0.1em 0.35em;
          border-radius: 4px;
        }
        pre {
          margin: 1rem 0;
          padding: 14px 18px;
          background: #1f2430;
          color: #e9ecf1;
          border-radius: 8px;
          overflow-x: auto;
          font: 0.86rem/1.55 var(--mono);
        }
        pre code { background: none; padding: 0; font-size: inherit; color: inherit; white-space: pre; }
        .table-wrap { overflow-x: auto; margin: 1.2rem 0; }
        table { border-collapse: collapse; font-size: 0.94rem; min-width: 50%; }
        caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: 0.88rem; padding-top: 0.5rem; }
        th {
          text-align: left;
          font-weight: 600;
          padding: 7px 14px;
          border-bottom: 2px solid #3a3f47;
          white-space: nowrap;
        }
        td { padding: 6px 14px; border-bottom: 1px solid var(--line); vertical-align: top; }
        tbody tr:nth-child(even) { background: #fafbfc; }
        th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
        figure { margin: 1.5rem 0; }
        figure.figure { margin: 1.5rem 0; }
        .figure-items { display: flex; flex-wrap: wrap; gap: 10px 14px; align-items: flex-end; }
        .figure-item { margin: 0; }
        .figure-item.chart { flex: 1 1 100%; min-width: 0; }
        .figure-item.image { text-align: center; }
        .figure-item img { display: block; max-width: 100%; height: auto; border-radius: 2px; }
        img.pixelated { image-rendering: crisp-edges; image-rendering: pixelated; }
        .item-label { font-size: 0.78rem; color: var(--muted); margin-top: 0.2rem; }
        svg.chart { display: block; max-width: 100%; height: auto; }
        figcaption { margin-top: 0.5rem; color: var(--muted); font-size: 0.9rem; line-height: 1.45; max-width: 52em; }
        .figure-row { display: grid; gap: 16px; margin: 1.5rem 0; align-items: start; }
        figure.card {
          margin: 0;
          padding: 12px;
          border: 1px solid var(--line);
          border-radius: 10px;
          background: #ffffff;
        }
        figure.card .figure-items { justify-content: center; }
        figure.card figcaption { text-align: center; font-size: 0.85rem; }
        .callout {
          margin: 1.3rem 0;
          padding: 0.8rem 1.1rem;
          border-left: 4px solid var(--accent);
          border-radius: 6px;
          background: #ecf5fb;
        }
        .callout p { margin: 0.2rem 0; }
        .callout-title { font-weight: 650; }
        .callout.success { border-color: #009e73; background: #e8f6f1; }
        .callout.warning { border-color: #d55e00; background: #fcefe6; }
        .callout.warning .callout-title { color: #a84700; }
        .key-figures {
          display: grid;
          grid-template-columns: repeat(auto-fit, minmax(170px, 1fr));
          gap: 12px;
          margin: 1.4rem 0;
        }
        .key-figure { background: var(--soft); border-radius: 10px; padding: 14px 16px; }
        .key-figure .value {
          font-size: 1.9rem;
          font-weight: 650;
          line-height: 1.15;
          font-variant-numeric: tabular-nums;
          letter-spacing: -0.01em;
        }
        .key-figure .label { color: var(--muted); font-size: 0.88rem; margin-top: 0.2rem; }
        footer {
          margin-top: 4rem;
          padding-top: 1rem;
          border-top: 1px solid var(--line);
          color: var(--muted);
          font-size: 0.85rem;
        }
        @media (max-width: 640px) {
          main { padding: 28px 18px; }
          nav.toc ol { columns: 1; }
          .report-header h1 { font-size: 1.9rem; }
        }
        @media print {
          html { background: #ffffff; }
          main { padding: 0; max-width: none; }
          figure, table, .callout, pre { break-inside: avoid; }
        }

        """
}
