import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// What `--help` shows a new user (issue 18 item 16): group titles that read well in the
/// capitals swift-argument-parser prints them in, and value names that say what to give.
@Suite("Command help", .enabled(if: FileManager.default.isExecutableFile(atPath: MountSupport.peachBinary), "peach is not built"))
struct CommandHelpTests {
    let peach = "'\(MountSupport.peachBinary)'"

    @Test("option group titles have no option or path in them (they print upper-cased: --MODE, DOCS/SECURITY.MD)",
          arguments: ["mount", "server", "admin clients"])
    func groupTitles(command: String) throws {
        let help = try shell("\(peach) \(command) --help").output
        for line in help.split(separator: "\n") where line.hasSuffix(":") && line == line.uppercased() && line.first?.isLetter == true {
            #expect(!line.contains("--") && !line.contains(".MD") && !line.contains("/"), "\(command): \(line)")
        }
    }

    @Test("bench output options name their values FILE and DIR")
    func benchValueNames() throws {
        let help = try shell("\(peach) bench ostep --help").output
        #expect(help.contains("--json <FILE>"), "\(help)")
        #expect(help.contains("--report <DIR>"), "\(help)")
    }
}
