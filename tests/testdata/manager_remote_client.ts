// A program that joins a remote manager on its own (not started by the server
// process): deno run --allow-net tests/testdata/manager_remote_client.ts <host> <port> <authkey> <n>
import { Manager, type QueueProxy } from "../../mod.ts";

const [hostname, port, authkey, n] = Deno.args;
await using remote = await Manager.connect(
  { hostname: hostname!, port: Number(port) },
  { authkey: authkey! },
);
const jobs = await remote.lookup<QueueProxy<string>>("jobs");
for (let i = 0; i < Number(n); i++) await jobs.put(`job ${i} from pid ${Deno.pid}`);
console.log("done");
