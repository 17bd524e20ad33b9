// Upload with a progress bar; a refusal shows the server's message, which names the problem.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  const bar = document.getElementById("upload-progress");
  const message = document.getElementById("upload-message");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = new FormData(form);
    const request = new XMLHttpRequest();
    request.open("POST", "/api/datasets/");
    request.setRequestHeader("X-CSRFToken", body.get("csrfmiddlewaretoken"));
    request.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
    request.onload = () => {
      bar.hidden = true;
      let reply = {};
      try { reply = JSON.parse(request.responseText); } catch (err) { reply = { error: request.statusText }; }
      if (request.status === 201) {
        message.className = "ok";
        message.textContent = `Uploaded ${reply.name}.`;
        location.assign(`/datasets/?uploaded=${reply.id}`);  // the list with it, and what was made of the file
      } else {
        message.className = "error";
        message.textContent = `Refused: ${reply.error || request.statusText}`;
      }
    };
    request.onerror = () => { bar.hidden = true; message.className = "error"; message.textContent = "Upload failed: no answer from the server."; };
    bar.hidden = false; bar.value = 0; message.textContent = "";
    request.send(body);
  });
})();
