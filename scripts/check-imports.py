#!/usr/bin/env python3
"""Every module a Swift file imports is declared as a dependency of its target in Package.swift.

SwiftPM lets a file import a module its target reaches only through another dependency; such an
import builds today and breaks when the other dependency changes. Run by `make test`; exits 1 and
lists each undeclared import."""
import glob
import re
import sys

SYSTEM = {"Foundation", "Glibc", "Darwin", "Dispatch", "Synchronization", "Testing", "XCTest", "PackageDescription"}

package = open("Package.swift").read()
targets = re.finditer(
    r'\.(target|testTarget|executableTarget)\(\s*name:\s*"([^"]+)"(.*?)(?=\n\s*\.(?:target|testTarget|executableTarget|systemLibrary)\(|\n    \],)',
    package, re.S)
failures = []
for match in targets:
    kind, name, body = match.groups()
    declared = set(re.findall(r'"([A-Za-z0-9_]+)"', body))
    path = re.search(r'path:\s*"([^"]+)"', body)
    directory = path.group(1) if path else ("Tests/" if kind == "testTarget" else "Sources/") + name
    for file in sorted(glob.glob(directory + "/**/*.swift", recursive=True)):
        for module in re.findall(r'^(?:@\w+ )*import (\w+)', open(file).read(), re.M):
            if module not in declared and module not in SYSTEM and module != name:
                failures.append(f"{file}: imports {module}, which Package.swift does not declare for {name}")
for failure in failures:
    print(failure)
sys.exit(1 if failures else 0)
