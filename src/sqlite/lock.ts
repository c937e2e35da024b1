/**
 * One SQLite file, one writer: an exclusive flock(2) on `<file>.lock`, taken when the store opens
 * and held for as long as the process keeps it (the kernel lets it go when the process dies, even
 * to SIGKILL, so no stale lock is ever left). The file holds the holder's process id, so that a
 * second server on the same file can say who has it.
 */
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";

/** flock(2)'s operations (Linux, and every BSD). */
const LOCK_EX = 2;
const LOCK_NB = 4;

type Flock = (fd: number, operation: number) => number;

/** libc's flock, through bun:ffi; null where there is none to load (then files go unlocked). */
function loadFlock(): Flock | null {
  try {
    const libc = process.platform === "darwin" ? "libc.dylib" : "libc.so.6";
    const lib = dlopen(libc, { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
    return (fd, operation) => lib.symbols.flock(fd, operation);
  } catch {
    return null;
  }
}

let flock: Flock | null | undefined;

/** A held lock; `release` lets it go (safe to call twice). */
export interface FileLock {
  release(): void;
}

/** The lock is held by another process (`holder`: its id, when the lock file says). */
export class LockedError extends Error {
  constructor(
    readonly lockPath: string,
    readonly holder: number | null,
  ) {
    super(`in use by ${holder === null ? "another process" : `process ${holder}`} (${lockPath} is locked): one file takes one server`);
  }
}

/**
 * Takes the lock of database `path` for this process; throws LockedError when another holds it
 * (and what openSync throws when the lock file cannot be made).
 *   lockDatabase("./data/chat.sqlite") // a second process: LockedError("in use by process 4242 …")
 */
export function lockDatabase(path: string): FileLock {
  flock ??= loadFlock();
  const lockPath = `${path}.lock`;
  const fd = openSync(lockPath, "a+");
  if (flock && flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    closeSync(fd);
    let holder = "";
    try {
      holder = readFileSync(lockPath, "utf8").trim();
    } catch {}
    throw new LockedError(lockPath, /^\d+$/.test(holder) ? Number(holder) : null);
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`);
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      closeSync(fd);
    },
  };
}
