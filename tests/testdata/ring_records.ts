// Records for ring_test.ts: the producer's id, a u32 index, then filler; the
// length varies with the index, so that records wrap at every offset.

export function recordOf(producer: number, index: number): Uint8Array {
  const record = new Uint8Array(5 + (index % 11));
  record[0] = producer;
  new DataView(record.buffer).setUint32(1, index, true);
  record.fill(index & 0xff, 5);
  return record;
}

/** [producer, index] of a record from recordOf(), which it checks. */
export function readRecord(record: Uint8Array): [number, number] {
  const index = new DataView(record.buffer, record.byteOffset).getUint32(1, true);
  if (record.length !== 5 + (index % 11) || record.subarray(5).some((b) => b !== (index & 0xff))) {
    throw new Error(`record ${index} of ${record[0]} is garbled: ${record}`);
  }
  return [record[0]!, index];
}
