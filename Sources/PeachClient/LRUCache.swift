/// A least-recently-used map bounded by the total cost of its values. Not thread-safe: the
/// owner guards it. Lookups, insertions and removals are O(1).
struct LRUCache<Key: Hashable, Value> {
    private final class Node {
        let key: Key
        var value: Value
        var cost: Int
        var newer: Node?
        var older: Node?

        init(key: Key, value: Value, cost: Int) {
            self.key = key
            self.value = value
            self.cost = cost
        }
    }

    private(set) var capacity: Int
    private(set) var totalCost = 0
    private var nodes: [Key: Node] = [:]
    private var newest: Node?
    private var oldest: Node?

    init(capacity: Int) {
        self.capacity = capacity
    }

    var count: Int { nodes.count }

    /// A new capacity; returns the keys evicted, oldest first, to fit it.
    mutating func resize(to capacity: Int) -> [Key] {
        self.capacity = capacity
        var evicted: [Key] = []
        while totalCost > capacity, let victim = oldest {
            remove(victim.key)
            evicted.append(victim.key)
        }
        return evicted
    }

    /// The value, marked as just used.
    mutating func get(_ key: Key) -> Value? {
        guard let node = nodes[key] else { return nil }
        unlink(node)
        pushNewest(node)
        return node.value
    }

    /// Inserts or replaces; returns the keys evicted to stay within capacity.
    @discardableResult
    mutating func set(_ key: Key, _ value: Value, cost: Int) -> [Key] {
        if let node = nodes[key] {
            totalCost += cost - node.cost
            node.value = value
            node.cost = cost
            unlink(node)
            pushNewest(node)
        } else {
            let node = Node(key: key, value: value, cost: cost)
            nodes[key] = node
            totalCost += cost
            pushNewest(node)
        }
        var evicted: [Key] = []
        while totalCost > capacity, let victim = oldest, victim.key != key {
            remove(victim.key)
            evicted.append(victim.key)
        }
        return evicted
    }

    @discardableResult
    mutating func remove(_ key: Key) -> Value? {
        guard let node = nodes.removeValue(forKey: key) else { return nil }
        unlink(node)
        totalCost -= node.cost
        return node.value
    }

    private mutating func unlink(_ node: Node) {
        node.newer?.older = node.older
        node.older?.newer = node.newer
        if newest === node { newest = node.older }
        if oldest === node { oldest = node.newer }
        node.newer = nil
        node.older = nil
    }

    private mutating func pushNewest(_ node: Node) {
        node.older = newest
        newest?.newer = node
        newest = node
        if oldest == nil { oldest = node }
    }
}
