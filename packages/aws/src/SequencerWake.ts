/**
 * Waking a stream's sequencer: an asynchronous Lambda invocation (InvocationType `Event`) with payload
 * `{ "stream": "<name>" }`. Lambda queues the event durably and answers 202 at once; the sequencer that runs
 * takes the stream's lease or, if another holds it, returns at once, so extra wake-ups cost one invocation and
 * one conditional write each and change nothing.
 */
import { InvokeCommand, type LambdaClient } from "@aws-sdk/client-lambda";
import { storeFailure } from "./errors.ts";

/** The port: wake the sequencer for `stream`; resolves once the wake-up is queued (not when it ran). */
export interface SequencerWake {
  wake(stream: string): Promise<void>;
}

/** What the sequencer function receives from a wake-up. */
export interface WakeEvent {
  stream: string;
}

export class LambdaWake implements SequencerWake {
  constructor(
    private readonly lambda: LambdaClient,
    readonly functionName: string,
  ) {}

  async wake(stream: string): Promise<void> {
    const payload: WakeEvent = { stream };
    try {
      await this.lambda.send(
        new InvokeCommand({
          FunctionName: this.functionName,
          InvocationType: "Event",
          Payload: new TextEncoder().encode(JSON.stringify(payload)),
        }),
      );
    } catch (e) {
      throw storeFailure(`Invoke ${this.functionName} (wake ${stream})`, e);
    }
  }
}
