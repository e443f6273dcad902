// Files over HTTP: upload with progress (XHR, the raw file as the body) and
// download links.  Both carry the session's web_token.

export const FILE_TAG = /<file>\s*([^<>]*?)\s*<\/file>/g;

// The name the user chose: stored names are <owner>_<ms>_<original>.
export function originalName(stored) {
  const match = /^.*?_\d+_(.+)$/.exec(stored);
  return match ? match[1] : stored;
}

// Resolves with {name, size, sha256}; onProgress gets 0..100.
export function upload(file, token, onProgress) {
  return new Promise((resolve, reject) => {
    if (!token) return reject(new Error("not logged in"));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/files");
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(Math.round((100 * event.loaded) / event.total));
    };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (error) { /* not JSON */ }
      if (xhr.status === 201) resolve(body);
      else reject(new Error(body.error || `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error("upload failed: connection lost"));
    xhr.send(file);
  });
}

// A link that downloads ``stored`` with the token current when clicked.
export function fileLink(stored, token) {
  const link = document.createElement("a");
  link.textContent = `📎 ${originalName(stored)}`;
  link.download = originalName(stored);
  link.className = "file";
  link.dataset.name = stored;
  const point = () => { link.href = `/files/${encodeURIComponent(stored)}?token=${encodeURIComponent(token() || "")}`; };
  point();
  link.addEventListener("click", point);
  return link;
}
