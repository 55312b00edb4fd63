/**
 * Pagination tokens: listings are ordered by id, and a token is the last id a page returned
 * (base64url of `{"v":1,"list":<what>,"after":<id>}`). A page after it starts at the next id that
 * exists then, so volumes created or deleted between pages neither repeat nor shift others out.
 */
import { InvalidArgument } from './errors';
import type { ListOptions, Page } from './types';

export function encodeToken(list: string, after: string): string {
  return Buffer.from(JSON.stringify({ v: 1, list, after })).toString('base64url');
}

/** The id a token says to start after; InvalidArgument for anything else. */
export function decodeToken(op: string, list: string, token: unknown): string {
  const bad = (): never => {
    throw new InvalidArgument(op, `startingToken '${String(token)}' is not a token this provisioner gave for ${list}`);
  };
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]+$/.test(token)) return bad();
  let t: unknown;
  try {
    t = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    return bad();
  }
  const o = t as { v?: unknown; list?: unknown; after?: unknown };
  if (o === null || typeof o !== 'object' || o.v !== 1 || o.list !== list || typeof o.after !== 'string') return bad();
  return o.after as string;
}

/** Checks list options (InvalidArgument) and returns the page of `sorted` (ordered by id) they ask for. */
export function paginate<T extends { id: string }>(op: string, list: string, sorted: T[], opts: ListOptions = {}): Page<T> {
  const { maxEntries, startingToken } = checkListOptions(op, list, opts);
  const start = startingToken === undefined ? 0 : sorted.findIndex((e) => e.id > startingToken);
  const from = start < 0 ? sorted.length : start;
  const entries = maxEntries === undefined ? sorted.slice(from) : sorted.slice(from, from + maxEntries);
  const more = from + entries.length < sorted.length;
  return more && entries.length > 0 ? { entries, nextToken: encodeToken(list, entries[entries.length - 1].id) } : { entries };
}

export function checkListOptions(op: string, list: string, opts: ListOptions): { maxEntries?: number; startingToken?: string } {
  if (opts === null || typeof opts !== 'object') throw new InvalidArgument(op, 'options must be an object');
  const { maxEntries } = opts;
  if (maxEntries !== undefined && (!Number.isSafeInteger(maxEntries) || maxEntries < 0)) {
    throw new InvalidArgument(op, 'maxEntries must be a non-negative integer');
  }
  // CSI: max_entries 0 means no limit.
  return {
    maxEntries: maxEntries === 0 ? undefined : maxEntries,
    startingToken: opts.startingToken === undefined || opts.startingToken === '' ? undefined : decodeToken(op, list, opts.startingToken),
  };
}
