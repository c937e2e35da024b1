/**
 * The open connections, and the caps on them (§6): MAX_CONNECTIONS in all and
 * MAX_CONNECTIONS_PER_IP per client address, WebSocket and TCP alike, and none while draining.
 */
import type { Config } from "./config.ts";
import type { Connection } from "./connection.ts";

/** Why a new connection is turned away: HTTP status and error body. */
export interface Refusal {
  status: 503 | 429;
  error: "draining" | "too_many_connections" | "too_many_connections_from_ip";
}

export class Conns {
  private readonly open = new Set<Connection>();
  private readonly perIp = new Map<string, number>();
  private emptied: (() => void) | null = null;
  /** Shutting down: no connection is admitted. */
  draining = false;

  constructor(private readonly config: Config) {}

  get size(): number {
    return this.open.size;
  }

  /** Every open connection (a copy: closing them changes the set). */
  all(): Connection[] {
    return [...this.open];
  }

  /** Whether one more connection from `ip` may open. */
  admit(ip: string): Refusal | null {
    if (this.draining) return { status: 503, error: "draining" };
    if (this.open.size >= this.config.maxConnections) return { status: 503, error: "too_many_connections" };
    if ((this.perIp.get(ip) ?? 0) >= this.config.maxConnectionsPerIp) {
      return { status: 429, error: "too_many_connections_from_ip" };
    }
    return null;
  }

  add(conn: Connection): void {
    this.open.add(conn);
    this.perIp.set(conn.ip, (this.perIp.get(conn.ip) ?? 0) + 1);
  }

  /** False when it was not open (closed already): the caller's cleanup must not run twice. */
  remove(conn: Connection): boolean {
    if (!this.open.delete(conn)) return false;
    const left = (this.perIp.get(conn.ip) ?? 1) - 1;
    if (left > 0) this.perIp.set(conn.ip, left);
    else this.perIp.delete(conn.ip);
    if (this.open.size === 0) this.emptied?.();
    return true;
  }

  /** Resolves when no connection is open. */
  whenEmpty(): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => (this.emptied = resolve));
  }
}
