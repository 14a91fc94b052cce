import Foundation
import Ink

/// `bench-report/index.html`: one page with every suite's report (its tables and charts), readable
/// offline. Each suite's report.md becomes HTML through Ink, and its charts are put inline, so
/// the page is one file that needs nothing else.
public enum BenchIndex {
    /// The suites in the order `make bench` runs them, and a title for each.
    static let suites: [(directory: String, title: String)] = [
        ("ostep", "The AFS-versus-NFS comparison (OSTEP), in-process clients"),
        ("ostep-mount", "The AFS-versus-NFS comparison (OSTEP), through FUSE mounts"),
        ("andrew", "The Andrew benchmark"),
        ("scale", "Scaling with clients"),
        ("sharing", "Sharing between clients"),
        ("io", "Throughput"),
        ("ops", "Operation latency and CPU"),
        ("tls", "What mutual TLS costs"),
    ]

    /// Writes `directory/index.html` from the reports found in its subdirectories; returns the
    /// suites included. Throws when there is none.
    @discardableResult
    public static func write(directory: String, date: String) throws -> [String] {
        let fm = FileManager.default
        let known = Set(suites.map(\.directory))
        let others = ((try? fm.contentsOfDirectory(atPath: directory)) ?? []).filter { !known.contains($0) }.sorted()
        let present = (suites + others.map { ($0, $0) }).filter { fm.fileExists(atPath: "\(directory)/\($0.directory)/report.md") }
        guard !present.isEmpty else { throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "\(directory)/*/report.md"]) }
        var sections = ""
        for suite in present {
            let folder = "\(directory)/\(suite.directory)"
            let markdown = try String(contentsOfFile: folder + "/report.md", encoding: .utf8)
            sections += "<section id=\"\(suite.directory)\">\n\(html(markdown, charts: folder))\n</section>\n"
        }
        let contents = present.map { "<li><a href=\"#\($0.directory)\">\(escape($0.title))</a></li>" }.joined(separator: "\n")
        let page = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>PeachFS benchmarks, \(escape(date))</title>
            <style>
            body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
            table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
            th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
            th:first-child, td:first-child { text-align: left; }
            section { border-top: 2px solid #d9534f; margin-top: 2em; }
            figure.chart { margin: 1em 0; }
            figure.chart svg { max-width: 100%; height: auto; }
            code { background: #f4f4f4; padding: 0 3px; }
            </style>
            </head>
            <body>
            <h1>PeachFS benchmarks</h1>
            <p>Written \(escape(date)) by <code>peach bench html</code> (which <code>make bench</code> runs last) from the reports beside this page.</p>
            <ul>
            \(contents)
            </ul>
            \(sections)
            </body>
            </html>

            """
        try page.write(toFile: directory + "/index.html", atomically: true, encoding: .utf8)
        return present.map(\.directory)
    }

    /// One report as HTML, each `![name](chart.svg)` replaced by the chart itself.
    static func html(_ markdown: String, charts folder: String) -> String {
        var parser = MarkdownParser()
        parser.addModifier(Modifier(target: .images) { _, markdown in
            // ![alt](file.svg): the file's SVG, inline.
            let text = String(markdown)
            guard let open = text.lastIndex(of: "("), let close = text.lastIndex(of: ")"), open < close else { return "" }
            let file = String(text[text.index(after: open)..<close])
            guard !file.contains("/"), let svg = try? String(contentsOfFile: folder + "/" + file, encoding: .utf8) else {
                return "<p>(chart \(escape(file)) missing)</p>"
            }
            return "<figure class=\"chart\" data-chart=\"\(escape(file))\">\(svg)</figure>"
        })
        return parser.html(from: markdown)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
