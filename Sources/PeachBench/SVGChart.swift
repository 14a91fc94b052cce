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

    /// Round ticks from 0 to a `niceMaximum`: fifths of a 2.5 or 5 (0.5, 1, …), quarters otherwise.
    static func linearTicks(_ maximum: Double) -> [Double] {
        let leading = maximum / pow(10, floor(log10(maximum)))
        let divisions = abs(leading - 2.5) < 1e-9 || abs(leading - 5) < 1e-9 ? 5 : 4
        return (0...divisions).map { maximum * Double($0) / Double(divisions) }
    }

    static func label(_ value: Double) -> String {
        if value == 0 { return "0" }
        if value >= 1_000_000 { return String(format: "%.3gM", value / 1_000_000) }
        if value >= 1000 { return String(format: "%.3gk", value / 1000) }
        return value < 10 ? String(format: "%.2g", value) : String(format: "%.0f", value)
    }

    /// A ratio of two series written above each group, as the suite's table shows it.
    public struct Ratio {
        public var numerator: Int
        public var denominator: Int
        public var label: String

        public init(numerator: Int, denominator: Int, label: String) {
            self.numerator = numerator
            self.denominator = denominator
            self.label = label
        }
    }

    /// Roughly how wide `text` is drawn in a sans-serif font of `size` pixels.
    static func textWidth(_ text: String, size: Double = 12) -> Double { Double(text.count) * size * 0.58 }

    /// `text` in lines of at most `width` pixels, broken between words (a longer word stands alone).
    static func wrap(_ text: String, width: Double, size: Double = 12) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            let candidate = line.isEmpty ? String(word) : line + " " + word
            if textWidth(candidate, size: size) > width && !line.isEmpty {
                lines.append(line)
                line = String(word)
            } else {
                line = candidate
            }
        }
        if !line.isEmpty { lines.append(line) }
        return lines.isEmpty ? [""] : lines
    }

    /// `lines` as one <text> with a <tspan> per line, the first at `y`.
    static func textLines(_ lines: [String], x: Double, y: Double, anchor: String = "middle", size: Double = 12,
                          bold: Bool = false) -> String {
        let weight = bold ? " font-weight=\"bold\"" : ""
        var text = "<text x=\"\(x)\" y=\"\(y)\" text-anchor=\"\(anchor)\" font-size=\"\(size)\"\(weight)>"
        for (index, line) in lines.enumerated() {
            text += "<tspan x=\"\(x)\" dy=\"\(index == 0 ? 0 : size * 1.2)\">\(escape(line))</tspan>"
        }
        return text + "</text>\n"
    }

    /// The legend: a swatch and a name per series, each as wide as its name.
    static func legend(_ series: [Series], y: Double) -> String {
        var svg = ""
        var x = 0.0
        for serie in series {
            svg += "<rect x=\"\(x)\" y=\"\(y)\" width=\"14\" height=\"14\" fill=\"\(serie.color)\"/>\n"
            svg += "<text x=\"\(x + 20)\" y=\"\(y + 12)\">\(escape(serie.name))</text>\n"
            x += 20 + textWidth(serie.name) + 24
        }
        return svg
    }

    /// Grouped bars: one group per category, named under it (wrapped to fit), one bar per series.
    /// The chart widens so that every group's name fits on at most three lines, and the title
    /// wraps to the chart's width.
    public static func bars(title: String, yLabel: String, categories: [String], series: [Series], logScale: Bool = false,
                            ratio: Ratio? = nil) -> String {
        let left = 70.0, right = 20.0
        let longestWord = categories.flatMap { $0.split(separator: " ") }.map { textWidth(String($0)) }.max() ?? 0
        let widestName = categories.map { textWidth($0) }.max() ?? 0
        // Wide enough for the longest word, and for the whole name in three lines.
        let groupWidth = max(70, longestWord + 12, widestName / 3 + 24)
        let width = max(640, left + right + Double(categories.count) * groupWidth)
        let plotWidth = width - left - right
        let names = categories.map { wrap($0, width: groupWidth - 8) }
        let nameLines = Double(names.map(\.count).max() ?? 1)
        let titleLines = wrap(title, width: width - 40, size: 16)
        let top = 34.0 + Double(titleLines.count) * 20 + (ratio == nil ? 0 : 10)
        let bottom = 44.0 + nameLines * 14.4 + 20
        let plotHeight = 270.0
        let height = top + plotHeight + bottom
        let maxValue = niceMaximum(series.flatMap(\.values).max() ?? 1)
        func y(_ v: Double) -> Double {
            if logScale {
                let top = log10(maxValue + 1)
                return plotHeight * (1 - log10(v + 1) / max(top, 1e-9))
            }
            return plotHeight * (1 - v / maxValue)
        }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width.rounded(.up)))" height="\(Int(height.rounded(.up)))" viewBox="0 0 \(Int(width.rounded(.up))) \(Int(height.rounded(.up)))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>

            """
        svg += textLines(titleLines, x: width / 2, y: 26, size: 16, bold: true)
        svg += "<g transform=\"translate(\(left),\(top))\">\n"
        var ticks = linearTicks(maxValue)
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
        let slot = plotWidth / Double(max(1, categories.count))
        let barWidth = slot * 0.8 / Double(max(1, series.count))
        for (c, category) in categories.enumerated() {
            var highest = plotHeight
            for (s, serie) in series.enumerated() where serie.values.indices.contains(c) {
                let value = serie.values[c]
                let x = Double(c) * slot + slot * 0.1 + Double(s) * barWidth
                let yy = y(value)
                highest = min(highest, yy)
                svg += "<rect class=\"bar\" x=\"\(x)\" y=\"\(yy)\" width=\"\(barWidth - 1)\" height=\"\(plotHeight - yy)\" fill=\"\(serie.color)\"><title>\(escape(serie.name)) \(escape(category)): \(label(value))</title></rect>\n"
            }
            let cx = Double(c) * slot + slot / 2
            svg += textLines(names[c], x: cx, y: plotHeight + 16)
            if let ratio, let text = ratioText(ratio, series, c) {
                svg += "<text class=\"ratio\" x=\"\(cx)\" y=\"\(max(highest - 6, -4))\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">\(escape(text))</text>\n"
            }
        }
        svg += "<line x1=\"0\" x2=\"\(plotWidth)\" y1=\"\(plotHeight)\" y2=\"\(plotHeight)\" stroke=\"#333\"/>\n"
        svg += "<text transform=\"translate(-52,\(plotHeight / 2)) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel + (logScale ? " (log scale)" : "")))</text>\n"
        var legendSeries = series
        if let ratio { legendSeries.append(Series(name: "number above: \(ratio.label)", color: "none", values: [])) }
        svg += legend(legendSeries, y: plotHeight + 28 + nameLines * 14.4)
        return svg + "</g>\n</svg>\n"
    }

    /// "0.12×" for one group, or nil when either value is missing or zero.
    static func ratioText(_ ratio: Ratio, _ series: [Series], _ index: Int) -> String? {
        guard series.indices.contains(ratio.numerator), series.indices.contains(ratio.denominator),
              let top = series[ratio.numerator].values[safe: index], let bottom = series[ratio.denominator].values[safe: index],
              top > 0, bottom > 0 else { return nil }
        let value = top / bottom
        return (value >= 10 ? String(format: "%.0f", value) : String(format: "%.2g", value)) + "×"
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
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(width / 2)" y="24" text-anchor="middle" font-size="16" font-weight="bold">\(escape(title))</text>
            <g transform="translate(\(left),\(top))">

            """
        for value in linearTicks(maxY) {
            svg += "<line x1=\"0\" x2=\"\(plotWidth)\" y1=\"\(py(value))\" y2=\"\(py(value))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"-8\" y=\"\(py(value) + 4)\" text-anchor=\"end\">\(label(value))</text>\n"
        }
        for value in x {
            svg += "<text x=\"\(px(value))\" y=\"\(plotHeight + 16)\" text-anchor=\"middle\">\(label(value))</text>\n"
        }
        for serie in series {
            let points = zip(x, serie.values).map { "\(px($0)),\(py($1))" }.joined(separator: " ")
            svg += "<polyline class=\"line\" points=\"\(points)\" fill=\"none\" stroke=\"\(serie.color)\" stroke-width=\"2\"/>\n"
            for (xv, yv) in zip(x, serie.values) {
                svg += "<circle cx=\"\(px(xv))\" cy=\"\(py(yv))\" r=\"3\" fill=\"\(serie.color)\"><title>\(escape(serie.name)) \(label(xv)): \(label(yv))</title></circle>\n"
            }
        }
        svg += "<line x1=\"0\" x2=\"\(plotWidth)\" y1=\"\(plotHeight)\" y2=\"\(plotHeight)\" stroke=\"#333\"/>\n"
        svg += "<text x=\"\(plotWidth / 2)\" y=\"\(plotHeight + 34)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        svg += "<text transform=\"translate(-52,\(plotHeight / 2)) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        svg += legend(series, y: plotHeight + 50)
        return svg + "</g>\n</svg>\n"
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
