"""A webhook receiver for trying Kwik Console: prints each delivery it gets and answers 200 (port 4242, or argv[1])."""

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        print(self.path, self.headers["webhook-id"], body[:100], flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # the line above is enough
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 4242
print(f"Receiving webhooks on http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
