import GRDB

/// The server database's migrations. Migrations are history: never edit one that has shipped;
/// add a new one.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE serverState (
                    key TEXT PRIMARY KEY NOT NULL,
                    value INTEGER NOT NULL
                );
                -- One row per file, directory, symlink or special file of volume 1.
                -- AUTOINCREMENT: a vnode number is never reused, so a FID never names two files.
                CREATE TABLE vnode (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    uniquifier INTEGER NOT NULL,
                    type INTEGER NOT NULL,
                    mode INTEGER NOT NULL,
                    uid INTEGER NOT NULL,
                    gid INTEGER NOT NULL,
                    size INTEGER NOT NULL,
                    linkCount INTEGER NOT NULL,
                    dataVersion INTEGER NOT NULL,
                    atimeSeconds INTEGER NOT NULL, atimeNanoseconds INTEGER NOT NULL,
                    mtimeSeconds INTEGER NOT NULL, mtimeNanoseconds INTEGER NOT NULL,
                    ctimeSeconds INTEGER NOT NULL, ctimeNanoseconds INTEGER NOT NULL,
                    rdev INTEGER NOT NULL DEFAULT 0,
                    -- Directories only: the one directory that holds this one.
                    parent INTEGER REFERENCES vnode(id),
                    symlinkTarget TEXT
                );
                CREATE TABLE dirEntry (
                    directory INTEGER NOT NULL REFERENCES vnode(id) ON DELETE CASCADE,
                    name TEXT NOT NULL,
                    child INTEGER NOT NULL REFERENCES vnode(id),
                    PRIMARY KEY (directory, name)
                ) WITHOUT ROWID;
                CREATE INDEX dirEntryChild ON dirEntry(child);
                -- A cache manager, known by the persistent UUID it sends in Hello.
                CREATE TABLE client (
                    id TEXT PRIMARY KEY NOT NULL,
                    epoch INTEGER NOT NULL,
                    callBacksLost INTEGER NOT NULL DEFAULT 0,
                    lastSeen INTEGER NOT NULL
                );
                -- The promises: client holds a valid copy of vnode until expiresAt (Unix seconds).
                CREATE TABLE callBack (
                    client TEXT NOT NULL REFERENCES client(id) ON DELETE CASCADE,
                    vnode INTEGER NOT NULL,
                    expiresAt INTEGER NOT NULL,
                    PRIMARY KEY (client, vnode)
                ) WITHOUT ROWID;
                CREATE INDEX callBackVnode ON callBack(vnode);
                """)
        }
        migrator.registerMigration("v2: volume bytes for the quota") { db in
            // The sum of regular files' sizes, kept by triggers in the same transaction as every
            // change, so a quota check costs one row read rather than a scan of the vnode table.
            try db.execute(sql: """
                INSERT OR REPLACE INTO serverState (key, value)
                    SELECT 'volumeBytes', COALESCE(SUM(size), 0) FROM vnode WHERE type = 1;
                CREATE TRIGGER vnodeBytesOnInsert AFTER INSERT ON vnode WHEN NEW.type = 1 BEGIN
                    UPDATE serverState SET value = value + NEW.size WHERE key = 'volumeBytes';
                END;
                CREATE TRIGGER vnodeBytesOnUpdate AFTER UPDATE OF size ON vnode WHEN NEW.type = 1 BEGIN
                    UPDATE serverState SET value = value + NEW.size - OLD.size WHERE key = 'volumeBytes';
                END;
                CREATE TRIGGER vnodeBytesOnDelete AFTER DELETE ON vnode WHEN OLD.type = 1 BEGIN
                    UPDATE serverState SET value = value - OLD.size WHERE key = 'volumeBytes';
                END;
                """)
        }
        migrator.registerMigration("v3: replies of numbered requests") { db in
            try db.execute(sql: """
                CREATE TABLE replay (
                    client TEXT NOT NULL, sequence INTEGER NOT NULL, reply BLOB NOT NULL,
                    PRIMARY KEY (client, sequence)
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v4: the principal that owns a client id") { db in
            // NULL for ids introduced before owners were recorded: the next Hello claims it.
            try db.execute(sql: "ALTER TABLE client ADD COLUMN owner TEXT")
        }
        migrator.registerMigration("v5: breaks not yet acknowledged") { db in
            // A broken promise stays until its client acknowledges the break, with the FID's
            // uniquifier (its vnode may be gone): until then the client may still trust it, so
            // the next change waits for it again, a restarted server knows it, and the client's
            // next Hello is told its promises are lost.
            try db.execute(sql: "ALTER TABLE callBack ADD COLUMN brokenUniquifier INTEGER")
        }
        migrator.registerMigration("v6: symlink targets count in the quota") { db in
            // A symlink's size is its target's length: 20,000 targets of 4 KiB put 98 MB in the
            // database under a 10 MB quota when only regular files counted.
            try db.execute(sql: """
                DROP TRIGGER vnodeBytesOnInsert;
                DROP TRIGGER vnodeBytesOnUpdate;
                DROP TRIGGER vnodeBytesOnDelete;
                CREATE TRIGGER vnodeBytesOnInsert AFTER INSERT ON vnode WHEN NEW.type IN (1, 3) BEGIN
                    UPDATE serverState SET value = value + NEW.size WHERE key = 'volumeBytes';
                END;
                CREATE TRIGGER vnodeBytesOnUpdate AFTER UPDATE OF size ON vnode WHEN NEW.type IN (1, 3) BEGIN
                    UPDATE serverState SET value = value + NEW.size - OLD.size WHERE key = 'volumeBytes';
                END;
                CREATE TRIGGER vnodeBytesOnDelete AFTER DELETE ON vnode WHEN OLD.type IN (1, 3) BEGIN
                    UPDATE serverState SET value = value - OLD.size WHERE key = 'volumeBytes';
                END;
                INSERT OR REPLACE INTO serverState (key, value)
                    SELECT 'volumeBytes', COALESCE(SUM(size), 0) FROM vnode WHERE type IN (1, 3);
                """)
        }
        migrator.registerMigration("v7: client ids by principal") { db in
            // A principal's ids are counted at each new one (`maximumClientIDsPerPrincipal`).
            try db.execute(sql: "CREATE INDEX clientOwner ON client(owner, lastSeen)")
        }
        migrator.registerMigration("v8: small files' content in the database") { db in
            // A row here holds the whole content of a regular file of at most `--inline-max`
            // bytes (VolumeStore+Inline.swift); such a file has no version file.
            try db.execute(sql: """
                CREATE TABLE inlineContent (vnode INTEGER PRIMARY KEY, data BLOB NOT NULL);
                CREATE TRIGGER inlineContentOnDelete AFTER DELETE ON vnode BEGIN
                    DELETE FROM inlineContent WHERE vnode = OLD.id;
                END;
                """)
        }
        return migrator
    }
}
