"""The report as a list of blocks, rendered twice: one self-contained HTML file (inline
CSS, pictures as data: URIs, no script, nothing fetched) and Markdown for a ModelZoo
README (pictures as files beside it). One list of blocks, so both say the same.

Blocks: ("h", level, text), ("p", text), ("note", text), ("cmd", text: one command a line),
("table", header, rows, note), ("img", name, png bytes, caption), ("kv", [(key, value)]), ("list", [text]).
A cell is a string, or (string, css class) with class ok | bad | na.
"""

import base64
import html

CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:#1b1f24;
 margin:0;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:18px 28px 60px;background:#fff}
h1{font-size:26px;margin:8px 0 4px;border-bottom:3px solid #c7000b;padding-bottom:6px}
h2{font-size:21px;margin:34px 0 8px;padding:6px 10px;background:#1f3b57;color:#fff;border-radius:3px}
h3{font-size:16px;margin:22px 0 6px;color:#1f3b57;border-bottom:1px solid #d0d7de}
p{margin:6px 0}
pre{background:#0f1720;color:#d6e2ee;padding:8px 10px;border-radius:3px;overflow-x:auto;
 font:12px/1.4 "DejaVu Sans Mono",Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#eef2f6;text-align:center}
td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
td.ok{color:#116329;font-weight:600}td.bad{color:#b3000b;font-weight:600}td.na{color:#8a939c;font-style:italic}
.note{color:#57606a;font-size:12px}
figure{margin:10px 0}figure img{max-width:100%;max-height:520px;border:1px solid #d0d7de}
figcaption{color:#57606a;font-size:12px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}
dt{color:#57606a}dd{margin:0;font-family:"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-all}
"""


class Blocks(list):
    """A list of blocks, with one method to add each kind."""

    def h(self, text: str, level: int = 3) -> None:
        self.append(("h", level, text))

    def p(self, text: str) -> None:
        self.append(("p", text))

    def note(self, text: str) -> None:
        self.append(("note", text))

    def cmd(self, text: str) -> None:
        self.append(("cmd", text))

    def table(self, header: list, rows: list, note: str | None = None) -> None:
        self.append(("table", header, rows, note))

    def img(self, name: str, data: bytes, caption: str) -> None:
        self.append(("img", name, data, caption))

    def kv(self, pairs: list) -> None:
        self.append(("kv", pairs))


def _cell(c):
    return c if isinstance(c, tuple) else (str(c), "")


def to_html(title, blocks):
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{e(title)}</h1>",
    ]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "note":
            out.append(f'<p class="note">{e(b[1])}</p>')
        elif kind == "cmd":
            out.append("<pre>" + "\n".join(f"$ {e(line)}" for line in b[1].split("\n")) + "</pre>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "kv":
            out.append("<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in b[1]) + "</dl>")
        elif kind == "table":
            _, header, rows, note = b
            out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
            for r in rows:
                cells = []
                for c in r:
                    text, cls = _cell(c)
                    cells.append(f'<td class="{cls}">{e(text)}</td>' if cls else f"<td>{e(text)}</td>")
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</tbody></table>")
            if note:
                out.append(f'<p class="note">{e(note)}</p>')
        elif kind == "img":
            _, name, data, caption = b
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            out.append(f'<figure><img src="{uri}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption></figure>')
        else:
            raise ValueError(f"unknown block {kind!r}")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def _md_escape(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(title, blocks, image_dir="img"):
    """(markdown text, {relative image path: png bytes})."""
    out, images = [f"# {title}", ""], {}
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out += ["#" * b[1] + " " + b[2], ""]
        elif kind in ("p", "note"):
            out += [(f"*{b[1]}*" if kind == "note" else b[1]), ""]
        elif kind == "cmd":
            out += ["```bash", b[1], "```", ""]
        elif kind == "list":
            out += [f"- {x}" for x in b[1]] + [""]
        elif kind == "kv":
            out += ["| | |", "|---|---|"] + [f"| {_md_escape(k)} | `{_md_escape(v)}` |" for k, v in b[1]] + [""]
        elif kind == "table":
            _, header, rows, note = b
            out.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
            out.append("|" + "---|" * len(header))
            for r in rows:
                out.append("| " + " | ".join(_md_escape(_cell(c)[0]) for c in r) + " |")
            out.append("")
            if note:
                out += [f"*{note}*", ""]
        elif kind == "img":
            _, name, data, caption = b
            rel, k = f"{image_dir}/{name}", 1
            while rel in images and images[rel] != data:  # two models' pictures of the same name
                k += 1
                rel = f"{image_dir}/{name[:-4] if name.endswith('.png') else name}_{k}.png"
            images[rel] = data
            out += [f"![{caption}]({rel})", ""]
        else:
            raise ValueError(f"unknown block {kind!r}")
    return "\n".join(out), images
