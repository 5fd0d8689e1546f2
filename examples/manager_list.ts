// A shared list of records kept by a manager: one child appends a record,
// another prints them all (Python's "Server process" manager example).
// Run: deno run --allow-read --allow-write --allow-run --allow-net examples/manager_list.ts
import { type ListProxy, Manager, Process } from "../mod.ts";

interface Record {
  name: string;
  score: number;
}

/** Appends one record to the shared list. */
export async function addRecord(records: ListProxy<Record>, record: Record): Promise<void> {
  await records.append(record);
}

/** Prints every record in the shared list. */
export async function printRecords(records: ListProxy<Record>): Promise<void> {
  for await (const record of records) console.log(`${record.name}: ${record.score}`);
}

if (import.meta.main) {
  await using manager = await Manager.start();
  const records = await manager.list<Record>([{ name: "ada", score: 10 }]);
  const writer = new Process({ target: addRecord, args: [records, { name: "bob", score: 7 }] });
  await writer.start();
  await writer.join();
  const reader = new Process({ target: printRecords, args: [records] });
  await reader.start();
  await reader.join(); // prints "ada: 10" then "bob: 7"
}
