/// FUSE's lookup count, kept the same way by both designs' nodes: each entry handed to the
/// kernel is one reference, and FORGET drops some. The nodes are values in their manager's table.
protocol KernelReferenced {
    var kernelReferences: UInt64 { get set }
    /// The kernel holds no reference any more; the node goes once nothing here uses it.
    var forgotten: Bool { get set }
}

extension KernelReferenced {
    mutating func handedToKernel() {
        forgotten = false
        kernelReferences += 1
    }

    /// The kernel dropped `count` references; true when that was its last.
    mutating func kernelDropped(_ count: UInt64) -> Bool {
        guard kernelReferences > 0 else { return false }
        kernelReferences -= min(count, kernelReferences)
        forgotten = kernelReferences == 0
        return forgotten
    }
}

extension CachedVnode: KernelReferenced {}
extension NFSNode: KernelReferenced {}
