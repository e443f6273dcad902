// Seed-000 in-band files offered to us (a JSON "file" offer, typically from
// a TCP client).  Accepting sends {"message_type":"file","content":"accept"};
// the server answers, in request order, with a "file-data" message and then
// exactly file_length bytes as binary WebSocket messages (nothing else comes
// in between), or with a "file" failure.  The bytes are kept as a Blob.

export class IncomingFiles {
  constructor(session) {
    this.session = session;
    this.accepts = []; // {offer, onProgress, resolve, reject} in the order the accepts went
    this.current = null; // the accept whose bytes are arriving
  }

  // Resolves with a Blob of the file; onProgress gets 0..100.
  accept(offer, onProgress) {
    return new Promise((resolve, reject) => {
      const frame = { message_type: "file", content: "accept", file_name: offer.file_name,
                      file_id: offer.file_id, send_user: offer.send_user };
      if (!this.session.sendFrame(frame)) return reject(new Error("not connected; try again in a moment"));
      this.accepts.push({ offer, onProgress, resolve, reject });
    });
  }

  // No reply on success: a failure comes back as a "reject" error.
  reject(offer) {
    return this.session.sendFrame({ message_type: "reject", file_name: offer.file_name,
                                    file_id: offer.file_id, send_user: offer.send_user });
  }

  // -- what the session hands over ------------------------------------------

  header(message) {
    const accept = this.accepts.shift();
    if (!accept) return;
    Object.assign(accept, { length: message.file_length, received: 0, chunks: [] });
    this.current = accept;
    this.bytes(new ArrayBuffer(0)); // a file of no bytes is whole at once
  }

  bytes(data) {
    const accept = this.current;
    if (!accept) return;
    accept.chunks.push(data);
    accept.received += data.byteLength;
    accept.onProgress(accept.length ? Math.floor((100 * accept.received) / accept.length) : 100);
    if (accept.received >= accept.length) {
      this.current = null;
      accept.resolve(new Blob(accept.chunks, { type: "application/octet-stream" }));
    }
  }

  // A "file" failure answers the oldest accept; true if there was one.
  failed(message) {
    const accept = this.accepts.shift();
    if (accept) accept.reject(new Error(message.reason || "the file could not be sent"));
    return Boolean(accept);
  }

  lost() {
    const cut = [...(this.current ? [this.current] : []), ...this.accepts.splice(0)];
    this.current = null;
    cut.forEach((accept) => accept.reject(new Error("connection lost: accept the file again")));
  }
}
