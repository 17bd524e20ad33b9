// The queue on the workers page: changing a run's priority saves it over the REST API and reloads
// the page, so the places shown are the server's (the order also counts other users' runs).
(function () {
  const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
  document.querySelectorAll("#queue input.priority").forEach((input) => {
    input.addEventListener("change", async () => {
      const row = input.closest("tr");
      const error = row.querySelector(".priority-error");
      error.textContent = "";
      const reply = await fetch(`/api/runs/${row.dataset.run}/`, {
        method: "PATCH",
        headers: { "Content-Type": "application/json", "X-CSRFToken": token },
        body: JSON.stringify({ priority: Number(input.value) }),
      });
      if (reply.ok) {
        window.location.reload();
      } else {
        const body = await reply.json().catch(() => ({}));
        error.textContent = body.error || `could not save (HTTP ${reply.status})`;
      }
    });
  });
})();
