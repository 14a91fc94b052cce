import Foundation

/// What every benchmark suite produces: an aligned table, a JSON document, a report directory.
public protocol BenchReport {
    func table() -> String
    func json() throws -> Data
    func writeReport(to directory: String, date: String, command: String) throws
}

/// The JSON document a suite writes: `{"suite": NAME, "rows": [...]}`.
struct BenchDocument<Row: Encodable>: Encodable {
    var suite: String
    var rows: [Row]
}

/// Encodes a suite's document with sorted keys, as every suite writes it.
func benchJSON<Document: Encodable>(_ document: Document) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(document)
}

func benchJSON<Row: Encodable>(suite: String, rows: [Row]) throws -> Data {
    try benchJSON(BenchDocument(suite: suite, rows: rows))
}
