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

  // A zarr store registered by URI: checked on the server (metadata, labels, a few chunks), never copied.
  const register = document.getElementById("register-form");
  const registerMessage = document.getElementById("register-message");
  register.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new FormData(register);
    registerMessage.className = "muted";
    registerMessage.textContent = "Checking the store…";
    try {
      const response = await fetch("/api/datasets/", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": body.get("csrfmiddlewaretoken") },
        body: JSON.stringify({ name: body.get("name"), uri: body.get("uri") }),
      });
      const reply = await response.json().catch(() => ({ error: response.statusText }));
      if (response.status === 201) {
        location.assign(`/datasets/?uploaded=${reply.id}`);
      } else {
        registerMessage.className = "error";
        registerMessage.textContent = `Refused: ${reply.error || response.statusText}`;
      }
    } catch (err) {
      registerMessage.className = "error";
      registerMessage.textContent = "Registering failed: no answer from the server.";
    }
  });
})();
