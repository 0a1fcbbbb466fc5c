/**
 * A verification worker of DigestPool: core's digestSegment on the segments the main thread hands it, with the
 * producer keys the pool was started with. The record and leaf hashes go back without a copy.
 */
import { digestSegment, publicKeyFromSpki } from "@auditsink/core";
import Tinypool, { kTransferable, kValue, markMovable } from "tinypool";

const { producerKeys } = Tinypool.workerData as { producerKeys?: [string, string][] };
const keys = producerKeys
  ? new Map(producerKeys.map(([id, spki]) => [id, publicKeyFromSpki(spki)]))
  : undefined;

export default function digest(bytes: Uint8Array) {
  const digest = digestSegment(bytes, keys);
  const moved = { [kValue]: digest, [kTransferable]: [digest.hashes.buffer, digest.leaves.buffer] };
  markMovable(moved);
  return moved;
}
