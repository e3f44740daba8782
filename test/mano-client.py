#!/usr/bin/python3
"""A MANO client as a Python plugin or the sonmano library is one: Debian's python3-pika
and python3-yaml, nothing from Drover.

Usage: mano-client.py AMQP_URL EXCHANGE TOPIC REPLIES TIMEOUT_S < request.yaml

Declares the exchange with the framework's flags, binds an exclusive queue to TOPIC,
publishes the request (stdin, re-encoded by PyYAML) with app_id, correlation_id and
reply_to, and prints each reply (same correlation_id, another app_id) as one JSON line.
Exits 0 after REPLIES replies, 2 when TIMEOUT_S passes first.
"""
import json
import sys
import time
import uuid

import pika
import yaml

APP_ID = 'sonmano-test-client'

url, exchange, topic = sys.argv[1:4]
wanted, timeout = int(sys.argv[4]), float(sys.argv[5])
request = yaml.safe_load(sys.stdin.read())

connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
channel.exchange_declare(exchange=exchange, exchange_type='topic', durable=False, auto_delete=False)
queue = channel.queue_declare(queue='q.%s.%s' % (topic, uuid.uuid4()), exclusive=True, auto_delete=True).method.queue
channel.queue_bind(queue=queue, exchange=exchange, routing_key=topic)

correlation_id = str(uuid.uuid4())
properties = pika.BasicProperties(app_id=APP_ID, correlation_id=correlation_id, reply_to=topic, content_type='application/yaml')
channel.basic_publish(exchange=exchange, routing_key=topic, body=yaml.dump(request), properties=properties)

got = 0
deadline = time.time() + timeout
for method, props, body in channel.consume(queue, auto_ack=True, inactivity_timeout=0.2):
    if method is not None and props.correlation_id == correlation_id and props.app_id != APP_ID:
        print(json.dumps({'app_id': props.app_id, 'body': yaml.safe_load(body)}), flush=True)
        got += 1
    if got == wanted or time.time() > deadline:
        break
channel.cancel()
connection.close()
sys.exit(0 if got == wanted else 2)
