import Foundation

/// Small, dependency-free SVG charts for the benchmark reports.
public enum SVGChart {
    public struct Series {
        public var name: String
        public var color: String
        public var values: [Double]

        public init(name: String, color: String, values: [Double]) {
            self.name = name
            self.color = color
            self.values = values
        }
    }

    public static let afsColor = "#d9534f"
    public static let nfsColor = "#337ab7"
    public static let localColor = "#5cb85c"

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func niceMaximum(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        let magnitude = pow(10, floor(log10(value)))
        for step in [1.0, 2.0, 2.5, 5.0, 10.0] where step * magnitude >= value { return step * magnitude }
        return 10 * magnitude
    }

    static func label(_ value: Double) -> String {
        if value == 0 { return "0" }
        if value >= 1_000_000 { return String(format: "%.3gM", value / 1_000_000) }
        if value >= 1000 { return String(format: "%.3gk", value / 1000) }
        return value < 10 ? String(format: "%.2g", value) : String(format: "%.0f", value)
    }

    /// Grouped bars: one group per category, one bar per series.
    public static func bars(title: String, yLabel: String, categories: [String], series: [Series], logScale: Bool = false) -> String {
        let width = max(640, 80 + categories.count * 70), height = 380
        let left = 70.0, right = 20.0, top = 50.0, bottom = 90.0
        let plotWidth = Double(width) - left - right, plotHeight = Double(height) - top - bottom
        let maxValue = niceMaximum(series.flatMap(\.values).max() ?? 1)
        func y(_ v: Double) -> Double {
            if logScale {
                let top = log10(maxValue + 1)
                return plotHeight * (1 - log10(v + 1) / max(top, 1e-9))
            }
            return plotHeight * (1 - v / maxValue)
        }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(width / 2)" y="24" text-anchor="middle" font-size="16" font-weight="bold">\(escape(title))</text>
            <g transform="translate(\(left),\(top))">

            """
        var ticks: [Double] = (0...4).map { maxValue * Double($0) / 4 }
        if logScale {
            let decades = Int(log10(maxValue).rounded(.up))
            let powers: [Double] = (0...decades).map { pow(10.0, Double($0)) }
            // 0, then 10, 100, …: a "1" tick would sit on top of the "0".
            ticks = [0.0] + powers.filter { $0 >= 10 && $0 <= maxValue }
        }
        for value in ticks {
            let yy = y(value)
            svg += "<line x1=\"0\" x2=\"\(plotWidth)\" y1=\"\(yy)\" y2=\"\(yy)\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"-8\" y=\"\(yy + 4)\" text-anchor=\"end\">\(label(value))</text>\n"
        }
        let groupWidth = plotWidth / Double(max(1, categories.count))
        let barWidth = groupWidth * 0.8 / Double(max(1, series.count))
        for (c, category) in categories.enumerated() {
            for (s, serie) in series.enumerated() where serie.values.indices.contains(c) {
                let value = serie.values[c]
                let x = Double(c) * groupWidth + groupWidth * 0.1 + Double(s) * barWidth
                let yy = y(value)
                svg += "<rect x=\"\(x)\" y=\"\(yy)\" width=\"\(barWidth - 1)\" height=\"\(plotHeight - yy)\" fill=\"\(serie.color)\"><title>\(escape(serie.name)) \(escape(category)): \(label(value))</title></rect>\n"
            }
            let cx = Double(c) * groupWidth + groupWidth / 2
            svg += "<text x=\"\(cx)\" y=\"\(plotHeight + 16)\" text-anchor=\"middle\">\(escape(category))</text>\n"
        }
        svg += "<line x1=\"0\" x2=\"\(plotWidth)\" y1=\"\(plotHeight)\" y2=\"\(plotHeight)\" stroke=\"#333\"/>\n"
        svg += "<text transform=\"translate(-52,\(plotHeight / 2)) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel + (logScale ? " (log scale)" : "")))</text>\n"
        for (s, serie) in series.enumerated() {
            let lx = Double(s) * 140
            svg += "<rect x=\"\(lx)\" y=\"\(plotHeight + 40)\" width=\"14\" height=\"14\" fill=\"\(serie.color)\"/>\n"
            svg += "<text x=\"\(lx + 20)\" y=\"\(plotHeight + 52)\">\(escape(serie.name))</text>\n"
        }
        return svg + "</g>\n</svg>\n"
    }

    /// Lines over a numeric x axis (the scaling curve).
    public static func lines(title: String, xLabel: String, yLabel: String, x: [Double], series: [Series]) -> String {
        let width = 640, height = 380
        let left = 70.0, right = 20.0, top = 50.0, bottom = 90.0
        let plotWidth = Double(width) - left - right, plotHeight = Double(height) - top - bottom
        let maxY = niceMaximum(series.flatMap(\.values).max() ?? 1)
        let minX = x.min() ?? 0, maxX = max(x.max() ?? 1, minX + 1)
        // log2 x axis: client counts double.
        func px(_ v: Double) -> Double { plotWidth * (log2(max(v, 1)) - log2(max(minX, 1))) / max(log2(maxX) - log2(max(minX, 1)), 1e-9) }
        func py(_ v: Double) -> Double { plotHeight * (1 - v / maxY) }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(width / 2)" y="24" text-anchor="middle" font-size="16" font-weight="bold">\(escape(title))</text>
            <g transform="translate(\(left),\(top))">

            """
        for i in 0...4 {
            let value = maxY * Double(i) / 4
            svg += "<line x1=\"0\" x2=\"\(plotWidth)\" y1=\"\(py(value))\" y2=\"\(py(value))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"-8\" y=\"\(py(value) + 4)\" text-anchor=\"end\">\(label(value))</text>\n"
        }
        for value in x {
            svg += "<text x=\"\(px(value))\" y=\"\(plotHeight + 16)\" text-anchor=\"middle\">\(label(value))</text>\n"
        }
        for serie in series {
            let points = zip(x, serie.values).map { "\(px($0)),\(py($1))" }.joined(separator: " ")
            svg += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(serie.color)\" stroke-width=\"2\"/>\n"
            for (xv, yv) in zip(x, serie.values) {
                svg += "<circle cx=\"\(px(xv))\" cy=\"\(py(yv))\" r=\"3\" fill=\"\(serie.color)\"><title>\(escape(serie.name)) \(label(xv)): \(label(yv))</title></circle>\n"
            }
        }
        svg += "<line x1=\"0\" x2=\"\(plotWidth)\" y1=\"\(plotHeight)\" y2=\"\(plotHeight)\" stroke=\"#333\"/>\n"
        svg += "<text x=\"\(plotWidth / 2)\" y=\"\(plotHeight + 34)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        svg += "<text transform=\"translate(-52,\(plotHeight / 2)) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        for (s, serie) in series.enumerated() {
            let lx = Double(s) * 140
            svg += "<rect x=\"\(lx)\" y=\"\(plotHeight + 50)\" width=\"14\" height=\"14\" fill=\"\(serie.color)\"/>\n"
            svg += "<text x=\"\(lx + 20)\" y=\"\(plotHeight + 62)\">\(escape(serie.name))</text>\n"
        }
        return svg + "</g>\n</svg>\n"
    }
}
