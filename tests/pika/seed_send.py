# The seed's producer (shared/seeds/), unchanged apart from the port.
import os
import pika
import time

# 连接到RabbitMQ服务器
connection = pika.BlockingConnection(pika.ConnectionParameters('localhost', int(os.environ['AMQP_PORT'])))
channel = connection.channel()

# 创建一个队列
channel.queue_declare(queue='hello')

# 发送消息
channel.basic_publish(exchange='', routing_key='hello', body='Hello World!')
print(" [x] Sent 'Hello World!'")

# 关闭连接
connection.close()
