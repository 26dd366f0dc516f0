"""The original teaching lab's message (../shared/seed-lab3-smtp-client.txt), byte for byte.

Its header block ends with "Content-Type: text/plain\\t\\n": a stray tab and a bare LF,
which must arrive normalised to CRLF.
"""

LAB_MESSAGE = (
    "from: hspikes <****@163.com>\r\n"
    "to: hspikes <****@qq.com>\r\n"
    "subject: Hello\r\n"
    "Content-Type: text/plain\t\n"
    "\r\n I love computer network!"
)

#: What must go on the wire (before dot-stuffing and the final ".").
LAB_NORMALISED = (
    b"from: hspikes <****@163.com>\r\n"
    b"to: hspikes <****@qq.com>\r\n"
    b"subject: Hello\r\n"
    b"Content-Type: text/plain\t\r\n"
    b"\r\n I love computer network!\r\n"
)
