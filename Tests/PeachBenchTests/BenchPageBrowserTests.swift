import Foundation
import PeachBench
import PeachSupport
import PeachTesting
import Testing

/// `bench-report/index.html` in a real browser (Chromium from Debian's packages, headless): every
/// chart is there, drawn, with bars, and no text outside it; the screenshot shows both designs'
/// colours. The report comes from a real run of the OSTEP suite at tiny sizes.
@Suite("Benchmark report page in a headless browser", .serialized,
       .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), "chromium is not installed"))
struct BenchPageBrowserTests {
    static let chromium = "/usr/bin/chromium"

    /// Appended to a copy of the page: once it is laid out, one line of JSON per chart.
    static let probe = """
        <script>
        window.addEventListener('load', () => {
          const charts = [...document.querySelectorAll('figure.chart')].map(figure => {
            const svg = figure.querySelector('svg');
            if (!svg) return {chart: figure.dataset.chart, width: 0, height: 0, marks: 0, outside: []};
            const box = svg.getBoundingClientRect();
            const marks = [...svg.querySelectorAll('rect.bar, polyline.line')]
              .filter(mark => { const b = mark.getBoundingClientRect(); return b.height > 0.5 && b.width > 0.5; }).length;
            const outside = [...svg.querySelectorAll('text')].filter(text => {
              const b = text.getBoundingClientRect();
              return b.width > 0 && (b.left < box.left - 1 || b.right > box.right + 1 || b.top < box.top - 1 || b.bottom > box.bottom + 1);
            }).map(text => text.textContent);
            const labels = [...svg.querySelectorAll('text')].map(text => text.textContent).join('|');
            return {chart: figure.dataset.chart, width: box.width, height: box.height, marks, outside, labels};
          });
          const pre = document.createElement('pre');
          pre.id = 'probe';
          pre.textContent = JSON.stringify(charts);
          document.body.appendChild(pre);
        });
        </script>
        """

    struct Chart: Decodable {
        var chart: String
        var width: Double
        var height: Double
        var marks: Int
        var outside: [String]
        var labels: String?
    }

    func browser(_ arguments: String) throws -> ShellResult {
        try shell("timeout 120 \(Self.chromium) --headless --no-sandbox --disable-gpu --hide-scrollbars \(arguments) 2>/dev/null")
    }

    @Test("index.html shows every OSTEP chart drawn, its workloads named, its text inside, and both designs' colours")
    func reportPage() throws {
        let directory = try TemporaryDirectory(prefix: "peach-page")
        defer { directory.remove() }
        let rows = try OSTEPSuite(sizes: OSTEPSuiteTests.tiny, mounted: false).run()
        try OSTEPReport(rows: rows, sizes: OSTEPSuiteTests.tiny, mounted: false)
            .writeReport(to: directory.path + "/ostep", date: "today", command: "test")
        #expect(try BenchIndex.write(directory: directory.path, date: "today") == ["ostep"])
        let page = try String(contentsOfFile: directory.path + "/index.html", encoding: .utf8)
        #expect(!page.contains("missing)"))
        try page.replacingOccurrences(of: "</body>", with: Self.probe + "\n</body>")
            .write(toFile: directory.path + "/probe.html", atomically: true, encoding: .utf8)

        let dom = try browser("--virtual-time-budget=5000 --dump-dom 'file://\(directory.path)/probe.html'").output
        let json = try #require(dom.range(of: #"<pre id="probe">(.*)</pre>"#, options: .regularExpression).map {
            String(dom[$0]).replacingOccurrences(of: #"</?pre[^>]*>"#, with: "", options: .regularExpression)
                .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
                .replacingOccurrences(of: "&amp;", with: "&")
        }, "the probe did not run: \(dom.prefix(300))")
        let charts = try JSONDecoder().decode([Chart].self, from: Data(json.utf8))
        #expect(charts.map(\.chart) == ["hit-rate.svg", "server-requests.svg", "bytes-moved.svg"])
        for chart in charts {
            #expect(chart.width > 300 && chart.height > 200, "\(chart.chart) is \(chart.width)×\(chart.height)")
            #expect(chart.marks > 0, "\(chart.chart) has no bars")
            #expect(chart.outside.isEmpty, "\(chart.chart): text outside the chart: \(chart.outside)")
            // Named, not numbered (the names wrap over lines: tspans, whose text runs together here).
            #expect(chart.labels?.contains("sequential") == true, "\(chart.chart): \(chart.labels ?? "")")
            #expect(chart.labels?.contains("#1") == false)
        }
        #expect(charts.last?.labels?.contains("×") == true, "the bytes chart shows the AFS/NFS ratio")

        // The screenshot: drawn, with the AFS-mode red and the NFS-mode blue bars.
        let shot = directory.path + "/shot.png"
        _ = try browser("--window-size=1280,3000 --screenshot='\(shot)' 'file://\(directory.path)/index.html'")
        let colours = try shell("python3 - '\(shot)' <<'EOF'\n\(Self.countColours)\nEOF").output
        let counts = colours.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        try #require(counts.count == 3, "\(colours)")
        #expect(counts[0] > 2000, "AFS-mode red pixels: \(counts[0])")
        #expect(counts[1] > 2000, "NFS-mode blue pixels: \(counts[1])")
        #expect(counts[2] > 20000, "pixels not white: \(counts[2])")
    }

    /// Decodes an 8-bit RGB(A) PNG with the standard library alone and prints how many pixels are
    /// the AFS-mode red, the NFS-mode blue, and not white.
    static let countColours = """
        import struct, sys, zlib
        data = open(sys.argv[1], 'rb').read()
        pos, idat, width, height, kind = 8, b'', 0, 0, 0
        while pos < len(data):
            length, tag = struct.unpack('>I4s', data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if tag == b'IHDR':
                width, height, depth, kind = struct.unpack('>IIBB', body[:10])
            elif tag == b'IDAT':
                idat += body
            pos += 12 + length
        channels = {2: 3, 6: 4}[kind]
        raw = zlib.decompress(idat)
        stride = width * channels
        previous = bytearray(stride)
        red = blue = ink = 0
        for row in range(height):
            start = row * (stride + 1)
            kind_of_filter, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = previous[i]
                c = previous[i - channels] if i >= channels else 0
                if kind_of_filter == 1: line[i] = (line[i] + a) & 255
                elif kind_of_filter == 2: line[i] = (line[i] + b) & 255
                elif kind_of_filter == 3: line[i] = (line[i] + (a + b) // 2) & 255
                elif kind_of_filter == 4:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            for x in range(0, stride, channels):
                r, g, bl = line[x], line[x + 1], line[x + 2]
                if (r, g, bl) == (217, 83, 79): red += 1
                elif (r, g, bl) == (51, 122, 183): blue += 1
                if r < 250 or g < 250 or bl < 250: ink += 1
            previous = line
        print(red, blue, ink)
        """
}
