import Foundation

/// A deterministic C source tree of the original Andrew benchmark's size (about 70 files,
/// 200 KB in five directories) that the system C compiler builds with its Makefile.
public struct SourceTree: Sendable {
    public struct File: Sendable {
        public var path: String
        public var bytes: [UInt8]
    }

    public let directories: [String]
    public let files: [File]

    public var totalBytes: Int { files.reduce(0) { $0 + $1.bytes.count } }

    public init(modules: Int = 50, headers: Int = 15) {
        let dirs = ["lib", "lib/util", "lib/net", "include", "cmd"]
        directories = dirs
        var files: [File] = []
        func add(_ path: String, _ text: String) { files.append(File(path: path, bytes: Array(text.utf8))) }
        for h in 0..<headers {
            var text = "#ifndef HEADER\(h)_H\n#define HEADER\(h)_H\n\n"
            for k in 0..<12 {
                text += "/* Declarations of group \(h), item \(k): kept as in any real header of the era. */\n"
                text += "struct record\(h)_\(k) { int id; long value; char name[32]; };\n"
            }
            text += "\nint header\(h)_checksum(int seed);\n\n#endif\n"
            add("include/header\(h).h", text)
        }
        var objects: [String] = []
        for m in 0..<modules {
            let directory = ["lib", "lib/util", "lib/net"][m % 3]
            var text = "#include \"../\(directory == "lib" ? "" : "../")include/header\(m % headers).h\"\n"
            text += "#include \"../\(directory == "lib" ? "" : "../")include/header\((m + 1) % headers).h\"\n\n"
            for f in 0..<14 {
                text += "/* Function \(f) of module \(m): a small loop the compiler has to work through. */\n"
                text += "static long module\(m)_step\(f)(long x) {\n    long acc = \(f + 1);\n"
                text += "    for (int i = 0; i < 16; i++) { acc = acc * 31 + (x ^ i) + \(m); if (acc > 1000000) acc %= 9973; }\n"
                text += "    return acc;\n}\n\n"
            }
            text += "long module\(m)(long x) {\n    return "
            text += (0..<14).map { "module\(m)_step\($0)(x + \($0))" }.joined(separator: " + ") + ";\n}\n"
            if m < headers {
                text += "\nint header\(m)_checksum(int seed) { return (int)(module\(m)(seed) % 1000); }\n"
            }
            add("\(directory)/module\(m).c", text)
            objects.append("\(directory)/module\(m).o")
        }
        var main = "#include <stdio.h>\n\n"
        main += (0..<modules).map { "long module\($0)(long x);" }.joined(separator: "\n") + "\n\n"
        main += "int main(void) {\n    long total = 0;\n"
        main += (0..<modules).map { "    total += module\($0)(\($0));" }.joined(separator: "\n")
        main += "\n    printf(\"andrew %ld\\n\", total);\n    return 0;\n}\n"
        add("cmd/main.c", main)
        objects.append("cmd/main.o")
        var makefile = "CC ?= cc\nCFLAGS ?= -O1\n\nOBJECTS = \(objects.joined(separator: " "))\n\n"
        makefile += "andrew: $(OBJECTS)\n\t$(CC) -o $@ $(OBJECTS)\n\n%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\n"
        makefile += "clean:\n\trm -f andrew $(OBJECTS)\n"
        add("Makefile", makefile)
        add("README", "A generated source tree of the Andrew benchmark's size, for PeachFS's benchmark suite.\n")
        self.files = files
    }
}

extension SourceTree {
    /// A real tree from disk (`peach bench andrew --tree DIR`): its directories and regular files.
    public init(loading root: String) throws {
        var directories: [String] = []
        var files: [File] = []
        guard let walker = FileManager.default.enumerator(atPath: root) else { throw BenchError("cannot read \(root)") }
        while let relative = walker.nextObject() as? String {
            let full = root + "/" + relative
            var st = stat()
            guard lstat(full, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: directories.append(relative)
            case S_IFREG: files.append(File(path: relative, bytes: Array(try Data(contentsOf: URL(fileURLWithPath: full)))))
            default: continue
            }
        }
        guard !files.isEmpty else { throw BenchError("\(root) holds no regular files") }
        self.init(directories: directories.sorted { $0.count < $1.count || $0.count == $1.count && $0 < $1 }, files: files)
    }

    init(directories: [String], files: [File]) {
        self.directories = directories
        self.files = files
    }

    /// Whether the tree has a Makefile that builds an `andrew` target (the generated one does).
    public var hasAndrewMakefile: Bool {
        files.contains { $0.path == "Makefile" && String(decoding: $0.bytes, as: UTF8.self).contains("andrew:") }
    }
}
